"""Browser fixtures: Debian's chromium, and a real server with tiny models that wants an API key."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.api.app import create_app
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.browser import Page, chromium, find_chromium
from tests.support.servers import running_server

API_KEY = "browser-test-key-0123456789"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The installed Chromium; a skip that says how to get it (a failure under CI, which installs it)."""
    found = find_chromium()
    if found is None:
        reason = "chromium is not installed: `apt-get install chromium` (as root; .ci/run does it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}, and CI must run the browser tests")
        pytest.skip(reason)
    return found


@pytest.fixture
def page(chromium_path: str, tmp_path: Path) -> Iterator[Page]:
    """A fresh headless Chromium tab with its network recorded."""
    with chromium(chromium_path, tmp_path) as tab:
        yield tab


@pytest.fixture(scope="module")
def keyed_url(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1 serving the tiny models, with API-key authentication on."""
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir, auth_mode="api-key", api_keys=API_KEY)
    with running_server(create_app(settings)) as url:
        wait_ready(url)  # /ready is open under auth too
        yield url
