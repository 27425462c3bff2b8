"""Input limits on a real server: body size (declared and chunked), named 4xx limits, WebSocket message size,
running jobs per caller, validation errors that do not echo, and CORS preflights."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from httpx_sse import connect_sse
from websockets.sync.client import connect as ws_connect

from tests.integration.conftest import tiny_server

BODY_LIMIT = 4096
ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def url(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    with tiny_server(
        tiny_bert_dir,
        tiny_classifier_dir,
        max_body_bytes=BODY_LIMIT,
        max_text_chars=3000,
        max_chunks=5,
        max_inputs_per_request=4,
        max_ws_message_bytes=2048,
        max_jobs_per_caller=1,
        remote_allowlist=["127.0.0.0/8"],
        cors_origins=[ORIGIN],
        cors_allow_credentials=True,
    ) as base:
        yield base


def _raw_exchange(url: str, head: bytes, body: bytes) -> tuple[bytes, bytes]:
    """Send ``head`` and part of a body on a raw socket; the answer's status line+headers and its body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head + body)
        received = b""
        while b"\r\n\r\n" not in received:
            piece = sock.recv(65536)
            assert piece, f"connection closed before an answer: {received!r}"
            received += piece
        headers, _, rest = received.partition(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in headers.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(rest) < length:
            rest += sock.recv(65536)
        assert sock.recv(65536) == b""  # and the server hangs up instead of reading the rest
    return headers, rest


def _request_head(path: str, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *extra, "", ""]
    return "\r\n".join(lines).encode()


def _assert_body_refused(headers: bytes, body: bytes) -> None:
    assert headers.startswith(b"HTTP/1.1 413"), headers
    assert b"connection: close" in headers.lower()
    error = json.loads(body)["error"]
    assert error["param"] == "body" and error["code"] == "input_too_large" and str(BODY_LIMIT) in error["message"]


def test_a_declared_oversize_body_is_refused_before_it_is_read(url: str) -> None:
    head = _request_head("/v1/embeddings", "Content-Length: 1000000000")
    headers, body = _raw_exchange(url, head, b'{"input": "' + b"x" * 1000)  # a millionth of what was declared
    _assert_body_refused(headers, body)


def test_a_chunked_body_is_refused_once_it_passes_the_limit(url: str) -> None:
    head = _request_head("/v1/embeddings", "Transfer-Encoding: chunked")
    piece = b"x" * (BODY_LIMIT + 100)
    headers, body = _raw_exchange(url, head, b"%x\r\n%s\r\n" % (len(piece), piece))  # no last chunk ever comes
    _assert_body_refused(headers, body)


def test_a_chunked_body_under_the_limit_is_served(url: str) -> None:
    payload = json.dumps({"model": "tiny-embed", "input": ["a small text"]}).encode()
    pieces = iter([payload[:10], payload[10:]])
    response = httpx.post(f"{url}/v1/embeddings", content=pieces, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 1


@pytest.mark.parametrize(
    ("path", "body", "param", "fragment"),
    [
        ("/v1/process", {"text": "x" * 3001}, "text", "at most 3000"),
        ("/v1/process", {"text": "word " * 100, "chunking": "chars", "chunk_size": 10}, "chunk_size", "limit of 5"),
        ("/v1/embeddings", {"model": "tiny-embed", "input": ["a"] * 5}, "input", "at most 4 per request"),
    ],
)
def test_each_limit_is_named_in_its_413(url: str, path: str, body: dict[str, Any], param: str, fragment: str) -> None:
    response = httpx.post(f"{url}{path}", json=body)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["param"] == param and fragment in error["message"]


def test_a_validation_error_is_422_and_does_not_echo_the_input(url: str) -> None:
    marker = "ECHO" * 400
    response = httpx.post(f"{url}/v1/embeddings", json={"input": [{"nested": marker}], "encoding_format": marker})
    assert response.status_code == 422
    assert "ECHO" not in response.text and len(response.text) < 500
    assert response.json()["error"]["param"] in {"input[0]", "encoding_format"}


def _until_done(ws: Any) -> list[dict[str, Any]]:
    messages = [json.loads(ws.recv(timeout=30))]
    while messages[-1]["type"] not in ("done", "error"):
        messages.append(json.loads(ws.recv(timeout=30)))
    return messages


def test_an_oversize_websocket_message_is_refused_and_the_socket_stays_open(url: str) -> None:
    with ws_connect(url.replace("http://", "ws://") + "/v1/ws", open_timeout=30) as ws:
        ws.send("x" * 3000)
        error = json.loads(ws.recv(timeout=30))
        assert error["type"] == "error"
        assert error["error"]["type"] == "InputTooLarge" and error["error"]["param"] == "message"
        assert "at most 2048" in error["error"]["message"]
        ws.send(json.dumps({"text": "Still here. Yes.", "targets": [{"model": "tiny-embed"}], "job_id": "after"}))
        messages = _until_done(ws)
        assert messages[-1]["type"] == "done" and messages[-1]["job_id"] == "after"


@pytest.fixture
def silent_upstream() -> Iterator[str]:
    """A loopback port that accepts connections and never answers: a remote call to it runs until cancelled."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/generic"


def test_a_caller_running_its_most_jobs_gets_429_until_one_ends(url: str, silent_upstream: str) -> None:
    slow = {"text": "One chunk.", "targets": [{"url": silent_upstream}], "timeout_s": 60}
    quick = {"text": "Quick one.", "targets": [{"model": "tiny-embed"}]}
    with (
        httpx.Client(timeout=60) as client,
        connect_sse(client, "POST", f"{url}/v1/process/stream", json=slow) as source,
    ):
        events = source.iter_sse()  # kept: a dropped iterator closes the stream
        assert next(events).event == "progress"  # the job is running and holds the caller's only slot
        refused = httpx.post(f"{url}/v1/process", json=quick)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1" and refused.json()["error"]["code"] == "rate_limit_exceeded"
        with ws_connect(url.replace("http://", "ws://") + "/v1/ws", open_timeout=30) as ws:
            ws.send(json.dumps({**quick, "job_id": "w"}))
            error = _until_done(ws)[-1]
            assert error["type"] == "error" and error["error"]["type"] == "RateLimited"
            assert error["error"]["retry_after_s"] == 1.0
    # The stream's reader left: its job is cancelled and the slot comes back (bounded wait, no timing asserted).
    deadline = time.monotonic() + 30
    while (response := httpx.post(f"{url}/v1/process", json=quick)).status_code == 429:
        assert time.monotonic() < deadline, "the job slot was never released"
        time.sleep(0.05)
    assert response.status_code == 200 and response.json()["successful"] == 1


def _preflight(url: str, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return httpx.options(f"{url}/v1/embeddings", headers=headers)


def test_a_preflight_from_an_allowed_origin_gets_the_cors_headers(url: str) -> None:
    response = _preflight(url, ORIGIN)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_a_preflight_from_another_origin_gets_none(url: str) -> None:
    response = _preflight(url, "https://evil.example")
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_answers_carry_cors_headers_only_for_allowed_origins(url: str) -> None:
    body = {"model": "tiny-embed", "input": "hello"}
    allowed = httpx.post(f"{url}/v1/embeddings", json=body, headers={"Origin": ORIGIN})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
    other = httpx.post(f"{url}/v1/embeddings", json=body, headers={"Origin": "https://evil.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    too_big = httpx.post(f"{url}/v1/embeddings", content=b"x" * (BODY_LIMIT + 1), headers={"Origin": ORIGIN})
    assert too_big.status_code == 413 and too_big.headers["access-control-allow-origin"] == ORIGIN
