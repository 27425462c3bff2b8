"""Unit-test fixtures shared across packages."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from tests.support.outbound import sni_recording_context


@pytest.fixture
def tls_server_context(tmp_path: Path) -> tuple[ssl.SSLContext, list[str | None]]:
    """A TLS server context for "rebind.test" (signed by ``tests.support.outbound.TEST_CA``) and the SNI names it
    is shown."""
    return sni_recording_context(tmp_path)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ``CHUNKSERVE_*`` variable from the shell, and an empty working directory (no stray .env file)."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("CHUNKSERVE_"):
            monkeypatch.delenv(key)
