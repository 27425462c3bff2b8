"""uvicorn's HTTP protocol with limits on the request head: its size, its header count and the time it may take.

httptools (uvicorn's parser) buffers a header line until it ends, however long, and uvicorn itself sets no limit
and no time for the head: a 16 MiB header was accepted, and a client sending no bytes held its connection for
ever. Here the bytes of a head are counted as they arrive; past ``max_bytes`` or ``max_headers`` the client gets
431, and a head not complete within ``timeout_s`` gets 408; then the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _answer(status: int, reason: str, message: str, code: str) -> bytes:
    body = orjson.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": "headers", "code": code}}
    )
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that refuses oversized (431) and slow (408) request heads; see the module docstring."""

    max_bytes = 64 * 1024
    max_headers = 100
    timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            self._arm()
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes > self.max_bytes:
            self._refuse(431, "Request Header Fields Too Large", f"request head over {self.max_bytes} bytes")
        elif self._header_count > self.max_headers:
            self._refuse(431, "Request Header Fields Too Large", f"more than {self.max_headers} headers")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next request's head starts here (its timer starts with its first byte)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self.transport.close()  # a connection that never sent a byte gets no answer
            return
        self._refuse(408, "Request Timeout", f"the request head did not arrive within {self.timeout_s:g} s")

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self._disarm()
        code = "request_timeout" if status == 408 else "headers_too_large"
        self.transport.write(_answer(status, reason, message, code))
        self.transport.close()


def limited_protocol(max_bytes: int, max_headers: int, timeout_s: float) -> type[LimitedHttpToolsProtocol]:
    """A protocol class with these limits (uvicorn builds one instance per connection from the class)."""
    return type(
        "ConfiguredHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"max_bytes": max_bytes, "max_headers": max_headers, "timeout_s": timeout_s},
    )
