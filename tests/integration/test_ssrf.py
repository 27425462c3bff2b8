"""Client-given URLs that point inward are refused with 422 before anything is sent (loopback targets only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.api.app import create_app
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server


async def fake_resolver(host: str, port: int) -> list[str]:
    """DNS for tests: one name that resolves inward; everything else is unknown."""
    if host == "rebind.test":
        return ["127.0.0.1"]
    raise OSError(f"fake resolver: unknown host {host}")


@pytest.fixture(scope="module")
def guarded(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    app = create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir), resolver=fake_resolver)
    with running_server(app) as url:
        wait_ready(url)
        yield url


def _port(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


@pytest.mark.parametrize(
    "template",
    [
        "{fake}/generic",  # loopback, not on the allowlist
        "http://localhost:{port}/generic",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://0xA9FEA9FE/",
        "http://2852039166/",
        "http://user:secret@127.0.0.1:{port}/generic",
        "http://rebind.test:{port}/generic",
        "ftp://127.0.0.1:{port}/",
        "file:///etc/passwd",
        "http://10.0.0.1/",
        "http://[fd00:ec2::254]/",
    ],
)
def test_inward_targets_are_refused_with_nothing_sent(guarded: str, fake: str, template: str) -> None:
    httpx.post(f"{fake}/_reset")
    url = template.format(fake=fake, port=_port(fake))
    response = httpx.post(f"{guarded}/v1/process", json={"text": "hello there.", "api_urls": [url]}, timeout=30)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "forbidden_target"
    assert "secret" not in response.text
    assert httpx.get(f"{fake}/_stats").json()["requests"] == 0


def test_a_refused_target_fails_the_whole_request_before_any_chunk_is_sent(guarded: str, fake: str) -> None:
    body = {"text": "hello there. " * 20, "chunk_size": 20, "targets": [{"model": "tiny-embed"}, {"url": f"{fake}/"}]}
    response = httpx.post(f"{guarded}/v1/process", json=body, timeout=30)
    assert response.status_code == 422
    assert httpx.get(f"{fake}/_stats").json()["requests"] == 0
