"""Wire details a new user trips on: float32 everywhere, base64 on /v1/process, WebSocket ids, trailing slashes."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from httpx_sse import connect_sse
from websockets.sync.client import connect as ws_connect

from service.api.app import create_app
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server

TEXT = "the movie was great and the food was bad"


@pytest.fixture(scope="module")
def server(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir, remote_allowlist=["127.0.0.0/8"])
    with running_server(create_app(settings)) as url:
        wait_ready(url)
        yield url


def _job(**extra: Any) -> dict[str, Any]:
    return {"text": TEXT, "chunk_size": 1000, "targets": [{"model": "tiny-embed"}], **extra}


def _reference(server: str) -> tuple[list[float], str]:
    """/v1/embeddings' float32 numbers and base64 bytes for TEXT."""
    body = {"model": "tiny-embed", "input": [TEXT]}
    floats = httpx.post(f"{server}/v1/embeddings", json=body).json()["data"][0]["embedding"]
    packed = httpx.post(f"{server}/v1/embeddings", json={**body, "encoding_format": "base64"})
    return floats, packed.json()["data"][0]["embedding"]


def test_process_stream_and_websocket_write_the_same_float32_numbers_as_embeddings(server: str) -> None:
    floats, _ = _reference(server)
    processed = httpx.post(f"{server}/v1/process", json=_job(), timeout=30).json()["results"][0]["result"]
    assert processed == floats  # float64 expansions of the same float32 values would differ here
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(client, "POST", f"{server}/v1/process/stream", json=_job()) as src,
    ):
        streamed = [json.loads(e.data)["result"] for e in src.iter_sse() if e.event == "result"]
    assert streamed == [floats]
    with ws_connect(server.replace("http://", "ws://") + "/v1/ws", open_timeout=10) as ws:
        ws.send(json.dumps(_job(job_id="f32")))
        message = json.loads(ws.recv(timeout=30))
        while message["type"] != "result":
            message = json.loads(ws.recv(timeout=30))
    assert message["result"] == floats


def test_process_offers_base64_like_embeddings(server: str) -> None:
    floats, packed = _reference(server)
    answer = httpx.post(f"{server}/v1/process", json=_job(encoding_format="base64"), timeout=30).json()
    result = answer["results"][0]["result"]
    assert result == packed
    decoded = np.frombuffer(base64.b64decode(result), dtype="<f4")
    np.testing.assert_array_equal(decoded, np.asarray(floats, dtype=np.float32))
    bad = httpx.post(f"{server}/v1/process", json=_job(encoding_format="hex"), timeout=30)
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "encoding_format"


@pytest.mark.parametrize("path", ["/process", "/process/"])
def test_classic_process_answers_with_and_without_the_slash(server: str, path: str) -> None:
    response = httpx.post(f"{server}{path}", json=_job(), timeout=30, follow_redirects=False)
    assert response.status_code == 200, response.text
    assert response.json()["successful"] == 1


@pytest.mark.parametrize("path", ["/stream", "/stream/"])
def test_classic_stream_answers_with_and_without_the_slash(server: str, path: str) -> None:
    with httpx.Client(timeout=30) as client, connect_sse(client, "POST", f"{server}{path}", json=_job()) as src:
        assert src.response.status_code == 200
        events = [e.event for e in src.iter_sse()]
    assert events.count("result") == 1 and events[-1] == "summary"


@pytest.mark.parametrize("path", ["/chat", "/chat/"])
def test_classic_websocket_answers_with_and_without_the_slash(server: str, path: str) -> None:
    with ws_connect(server.replace("http://", "ws://") + path, open_timeout=10) as ws:
        ws.send("One plain sentence.")
        assert json.loads(ws.recv(timeout=30))["type"] == "step"


def _wait_in_flight(fake: str, at_least: int) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{fake}/_stats").json()["in_flight"] < at_least and time.monotonic() < deadline:
        time.sleep(0.02)


def test_server_assigned_websocket_ids_never_collide_with_the_clients(server: str, fake: str) -> None:
    httpx.post(f"{fake}/_reset")
    held = {"text": "Held.", "chunk_size": 100, "api_urls": [f"{fake}/generic?latency_ms=30000"]}
    with ws_connect(server.replace("http://", "ws://") + "/v1/ws", open_timeout=10) as ws:
        ws.send(json.dumps({"job_id": "job-1", **held}))
        _wait_in_flight(fake, 1)  # the client's own job-1 is running now
        ws.send("A plain text job. It gets an id from the server.")
        messages = [json.loads(ws.recv(timeout=30))]
        while messages[-1]["type"] not in ("done", "error") or messages[-1]["job_id"] == "job-1":
            if messages[-1]["type"] == "error" and messages[-1]["job_id"] == "job-1":
                break
            messages.append(json.loads(ws.recv(timeout=30)))
    last = messages[-1]
    assert last["type"] == "done", last
    assert last["job_id"] != "job-1" and last["job_id"].startswith("job-")
