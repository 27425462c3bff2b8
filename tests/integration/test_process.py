"""/v1/process against a real server and a real fake remote on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from models.base import Model, Task
from models.loading import LoadOptions, load_model
from tests.integration.conftest import tiny_server

TEXT = " ".join(f"Sentence number {i} talks about the movie and the food." for i in range(12))


@pytest.fixture(scope="module")
def server(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    with tiny_server(
        tiny_bert_dir,
        tiny_classifier_dir,
        remote_allowlist=["127.0.0.0/8"],
        remote_per_host_limit=4,
        remote_retries=3,
        max_chunks=50,
    ) as url:
        yield url


@pytest.fixture(scope="module")
def embedder(tiny_bert_dir: Path) -> Model:
    return load_model("ref", tiny_bert_dir, Task.EMBEDDING, LoadOptions(device="cpu"))


def _stats(fake: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{fake}/_stats").json()
    return stats


def _reset(fake: str) -> None:
    httpx.post(f"{fake}/_reset")


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _process(server: str, body: dict[str, Any], path: str = "/v1/process") -> httpx.Response:
    return httpx.post(f"{server}{path}", json=body, timeout=60)


def test_mixed_local_and_remote_chunks_come_back_in_order(server: str, fake: str, embedder: Model) -> None:
    body = {
        "text": TEXT,
        "chunk_size": 120,
        "targets": [{"model": "tiny-embed"}, {"url": f"{fake}/generic"}],
        "include_text": True,
    }
    response = _process(server, body)
    assert response.status_code == 200, response.text
    data = response.json()
    chunks, results = data["chunks"], data["results"]
    assert data["total"] == len(chunks) == len(results) > 4
    assert data["successful"] == data["total"] and data["failed"] == 0
    assert "".join(c["text"] for c in chunks) == TEXT
    assert [r["index"] for r in results] == list(range(len(chunks)))
    for chunk, result in zip(chunks, results, strict=True):
        assert result["success"] and result["attempts"] == 1
        if chunk["index"] % 2 == 0:
            assert result["target"] == "tiny-embed"
            expected = embedder.predict(embedder.encode([chunk["text"]]))[0]
            np.testing.assert_allclose(result["result"], expected, atol=1e-5)
        else:
            assert result["target"] == f"{fake}/generic"
            assert result["result"]["text_length"] == len(chunk["text"])
            assert result["result"]["echo"] == chunk["text"][:50]


def test_classic_request_shape_works_on_process_slash(server: str, fake: str) -> None:
    urls = [f"{fake}/generic", f"{fake}/"]
    body = {"text": TEXT, "chunk_size": 200, "api_urls": urls}
    data = _process(server, body, "/process/").json()
    assert data["failed"] == 0 and data["total"] == len(data["chunks"])
    targets = [r["target"] for r in data["results"]]
    assert targets == [urls[i % 2] for i in range(len(targets))]


def test_no_targets_means_the_default_local_model(server: str) -> None:
    data = _process(server, {"text": TEXT, "chunk_size": 300}).json()
    assert data["failed"] == 0
    assert {r["target"] for r in data["results"]} == {"tiny-embed"}


def test_a_down_remote_fails_only_its_chunks(server: str, fake: str) -> None:
    dead_port = _closed_port()
    body = {
        "text": TEXT,
        "chunk_size": 120,
        "targets": [{"url": f"{fake}/generic"}, {"url": f"http://127.0.0.1:{dead_port}/generic"}],
    }
    data = _process(server, body).json()
    for result in data["results"]:
        if result["index"] % 2 == 0:
            assert result["success"], result
        else:
            assert not result["success"]
            assert result["error"]["type"] == "connect"
            assert result["attempts"] == 3
    assert data["failed"] == len(data["results"]) // 2


def test_a_slow_remote_times_out_alone(server: str, fake: str) -> None:
    body = {
        "text": TEXT,
        "chunk_size": 120,
        "timeout_s": 0.5,
        "targets": [{"model": "tiny-embed"}, {"url": f"{fake}/generic?latency_ms=5000"}],
    }
    data = _process(server, body).json()
    slow = [r for r in data["results"] if r["index"] % 2 == 1]
    fast = [r for r in data["results"] if r["index"] % 2 == 0]
    assert all(r["success"] for r in fast)
    assert slow and all(not r["success"] and r["error"]["type"] == "timeout" for r in slow)


def test_429_with_retry_after_is_retried_and_counted(server: str, fake: str) -> None:
    url = f"{fake}/generic?status=429&retry_after=0.05&fail_times=1"
    data = _process(server, {"text": TEXT, "chunk_size": 200, "api_urls": [url]}).json()
    assert data["failed"] == 0
    assert all(r["attempts"] == 2 for r in data["results"])


def test_malformed_and_500_answers_are_reported_per_chunk(server: str, fake: str) -> None:
    body = {
        "text": TEXT,
        "chunk_size": 120,
        "targets": [{"url": f"{fake}/generic?malformed=1"}, {"url": f"{fake}/generic?fail=500"}],
    }
    data = _process(server, body).json()
    kinds = {r["index"] % 2: r["error"]["type"] for r in data["results"]}
    assert kinds == {0: "malformed", 1: "status"}
    assert all(r["attempts"] == 3 for r in data["results"] if r["index"] % 2 == 1)
    assert all("Traceback" not in r["error"]["message"] for r in data["results"])


def test_per_host_limit_holds(server: str, fake: str) -> None:
    _reset(fake)
    body = {"text": TEXT * 2, "chunk_size": 60, "api_urls": [f"{fake}/generic?latency_ms=100"]}
    data = _process(server, body).json()
    assert data["failed"] == 0 and data["total"] > 12
    stats = _stats(fake)
    assert stats["peak_in_flight"] == 4


def test_openai_protocols_against_the_fake(server: str, fake: str) -> None:
    body = {
        "text": TEXT,
        "chunk_size": 200,
        "assignment": "broadcast",
        "targets": [
            {"url": f"{fake}/v1", "protocol": "openai-embeddings", "model": "e"},
            {"url": f"{fake}/v1", "protocol": "openai-chat", "model": "c"},
        ],
    }
    data = _process(server, body).json()
    assert data["total"] == 2 * len(data["chunks"]) and data["failed"] == 0
    for result in data["results"]:
        span = data["chunks"][result["index"]]
        chunk = TEXT[span["start"] : span["end"]]
        if isinstance(result["result"], str):
            assert result["result"] == "echo: " + chunk[:200]
        else:
            assert len(result["result"]) == 8


def test_too_many_chunks_is_413_before_any_work(server: str, fake: str) -> None:
    _reset(fake)
    response = _process(server, {"text": "x" * 10_000, "chunk_size": 10, "api_urls": [f"{fake}/generic"]})
    assert response.status_code == 413
    assert response.json()["error"]["param"] == "chunk_size"
    assert _stats(fake)["requests"] == 0


def test_redirects_are_not_followed(server: str, fake: str) -> None:
    _reset(fake)
    url = f"{fake}/generic?redirect=http://169.254.169.254/latest/meta-data"
    data = _process(server, {"text": "one short text.", "api_urls": [url]}).json()
    [result] = data["results"]
    assert not result["success"] and "302" in result["error"]["message"]
    assert _stats(fake)["requests"] == 1
