"""Request heads and bodies are bounded in size and in time, against a real server over raw sockets."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.config import Settings
from service.server.http_limits import LimitedHttpToolsProtocol, limited_protocol
from service.server.serving import uvicorn_config
from tests.integration.conftest import tiny_server

HEAD_BYTES = 8192
POST = b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def url(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    with tiny_server(
        tiny_bert_dir,
        tiny_classifier_dir,
        http=lambda settings: limited_protocol(
            settings.max_header_bytes, settings.max_headers, settings.header_timeout_s
        ),
        max_header_bytes=HEAD_BYTES,
        max_headers=20,
        header_timeout_s=0.5,
        body_timeout_s=0.5,
        body_min_bytes_per_s=1000,
    ) as base:
        yield base


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=20)
    return sock


def _send(sock: socket.socket, data: bytes) -> None:
    # The server may refuse and close before it has read everything: its answer is what counts.
    with contextlib.suppress(OSError):
        sock.sendall(data)


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one answer on ``sock``, read until the server closes it."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def test_a_request_head_over_the_byte_limit_gets_431_and_the_connection_closes(url: str) -> None:
    with _connect(url) as sock:
        _send(sock, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (HEAD_BYTES * 8))
        status, headers, body = _answer(sock)
    assert status == 431
    assert headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "headers_too_large"
    assert httpx.get(f"{url}/health").status_code == 200  # and the server still serves others


def test_more_headers_than_allowed_get_431(url: str) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(40))
    with _connect(url) as sock:
        _send(sock, b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        status, _, body = _answer(sock)
    assert status == 431
    assert "more than 20 headers" in json.loads(body)["error"]["message"]


def test_a_head_that_stops_half_way_gets_408(url: str) -> None:
    with _connect(url) as sock:
        _send(sock, b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        status, _, body = _answer(sock)
    assert status == 408
    assert json.loads(body)["error"]["code"] == "request_timeout"


def test_a_body_shorter_than_its_content_length_gets_408_naming_the_body(url: str) -> None:
    with _connect(url) as sock:
        head = (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        _send(sock, head + b'{"input": ')
        status, headers, body = _answer(sock)
    assert status == 408
    error = json.loads(body)["error"]
    assert (error["param"], error["code"]) == ("body", "request_timeout")
    assert headers["connection"] == "close"


def test_a_body_trickled_below_the_floor_gets_408(url: str) -> None:
    payload = json.dumps({"input": ["x" * 200]}).encode()
    with _connect(url) as sock:
        head = (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        )
        _send(sock, head % len(payload))
        sock.settimeout(0.05)
        answered = b""
        for byte in payload:  # one byte per 50 ms: 20 bytes/s, far under the 1000 bytes/s floor
            _send(sock, bytes([byte]))
            try:
                answered = sock.recv(65536)
            except TimeoutError:
                continue
            break
        sock.settimeout(20)
        data = answered
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]


def test_ordinary_requests_and_keep_alive_are_unaffected(url: str) -> None:
    with httpx.Client(base_url=url) as client:
        for _ in range(3):
            response = client.post("/v1/embeddings", json={"input": ["hello"]}, headers={"X-Extra": "y" * 1000})
            assert response.status_code == 200
            time.sleep(0.6)  # idle longer than the head timeout: an idle keep-alive connection is not a slow head
        assert client.get("/health").status_code == 200


def test_the_server_is_configured_with_the_settings_limits_and_keep_alive() -> None:
    settings = Settings(max_header_bytes=4096, max_headers=30, header_timeout_s=7, timeout_keep_alive_s=90)
    config = uvicorn_config(settings, object())
    protocol = config.http
    assert isinstance(protocol, type) and issubclass(protocol, LimitedHttpToolsProtocol)
    assert (protocol.max_bytes, protocol.max_headers, protocol.timeout_s) == (4096, 30, 7)
    assert config.timeout_keep_alive == 90
    assert Settings().timeout_keep_alive_s == 75
