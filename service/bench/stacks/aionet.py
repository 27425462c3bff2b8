"""An httpcore network backend written directly on asyncio transports and protocols.

httpcore's default backend goes through anyio: every read and write opens a cancel scope, and every check of an idle
connection asks the kernel whether its socket is readable. At a thousand concurrent calls that bookkeeping costs
more CPU than the HTTP itself. Here a protocol object buffers what arrives, so reads finish without a scope when
data is already there, and an idle connection knows it was closed without a system call.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2 as httpcore

_ConnectErrors = (OSError, ssl.SSLError, EOFError)
# Stop reading from the socket while this much is buffered and unread; start again once it is down to the low mark.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


class _Protocol(asyncio.Protocol):
    """Buffers incoming bytes and remembers end of stream, loss of the connection and write back-pressure."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.closed = False
        self.lost: Exception | None = None
        self.write_paused = False
        self.read_paused = False
        # The transport reads are paused on: the TLS one once the connection is upgraded.
        self.transport: asyncio.Transport | None = None
        self._reader: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        _wake(self._reader)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self._reader)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        _wake(self._reader)
        _wake(self._drained)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        _wake(self._drained)

    def take(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of what is buffered, resuming reads once the buffer has drained enough."""
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        if self.read_paused and len(self.buffer) <= _LOW_WATER and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()
        return data

    def next_arrival(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        self._reader = loop.create_future()
        return self._reader

    def next_drain(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        self._drained = loop.create_future()
        return self._drained


def _wake(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


async def _await_within(
    fut: asyncio.Future[None], seconds: float | None, on_timeout: type[Exception], what: str
) -> None:
    """Await ``fut``, failing it with ``on_timeout`` after ``seconds`` (a timer: no task, no cancel scope)."""
    if seconds is None:
        await fut
        return
    handle = asyncio.get_running_loop().call_later(seconds, _expire, fut, on_timeout, what, seconds)
    try:
        await fut
    finally:
        handle.cancel()


def _expire(fut: asyncio.Future[None], error: type[Exception], what: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(error(f"{what} timed out after {timeout} s"))


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        protocol.transport = transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 (httpcore's interface)
        """Up to ``max_bytes`` already received, waiting for some if none are; ``b""`` at end of stream.

        Raises:
            httpcore.ReadTimeout: nothing arrived within ``timeout``.
            httpcore.ReadError: the connection broke.
        """
        proto = self._protocol
        if not proto.buffer and not proto.eof and not proto.closed:
            await _await_within(proto.next_arrival(asyncio.get_running_loop()), timeout, httpcore.ReadTimeout, "read")
        if proto.buffer:
            return proto.take(max_bytes)
        if proto.lost is not None:
            raise httpcore.ReadError(str(proto.lost) or type(proto.lost).__name__)
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 (httpcore's interface)
        """Hand ``buffer`` to the transport, waiting while the kernel's send buffer is full.

        Raises:
            httpcore.WriteTimeout: the peer did not take the bytes within ``timeout``.
            httpcore.WriteError: the connection is closed.
        """
        if not buffer:
            return
        proto = self._protocol
        if proto.closed or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if proto.write_paused:
            await _await_within(proto.next_drain(asyncio.get_running_loop()), timeout, httpcore.WriteTimeout, "write")
            if proto.closed:
                raise httpcore.WriteError("the connection closed while writing")

    async def aclose(self) -> None:
        """Close the connection without waiting for the peer."""
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        """Upgrade this connection to TLS.

        Raises:
            httpcore.ConnectTimeout: the handshake took longer than ``timeout``.
            httpcore.ConnectError: the handshake failed (certificate, protocol, closed connection).
        """
        if self._protocol.buffer:
            # Bytes that came before the handshake are not protected by it; handing them out later as if they
            # had come over TLS would let a man in the middle inject a response. Refuse the connection.
            self._transport.abort()
            raise httpcore.ConnectError("the peer sent data before the TLS handshake; connection refused")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.abort()
            raise httpcore.ConnectTimeout(f"TLS handshake timed out after {timeout} s") from None
        except _ConnectErrors as exc:
            self._transport.abort()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        return AsyncioStream(transport, self._protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        """What httpcore asks about a connection; ``is_readable`` on an idle one means the peer closed it."""
        if info == "is_readable":
            proto = self._protocol
            return bool(proto.buffer) or proto.eof or proto.closed
        key = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername", "socket": "socket"}
        return self._transport.get_extra_info(key[info]) if info in key else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens ``AsyncioStream`` connections; the running loop must be asyncio's (or uvloop)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to ``host`` (an address or a name) on ``port``.

        Raises:
            httpcore.ConnectTimeout: no connection within ``timeout``.
            httpcore.ConnectError: refused, unreachable or unresolvable.
        """
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol, host, port, local_addr=None if local_address is None else (local_address, 0)
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out after {timeout} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)  # type: ignore[arg-type]

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Not offered: outbound calls go over TCP.

        Raises:
            httpcore.ConnectError: always.
        """
        raise httpcore.ConnectError("unix sockets are not supported by this backend")

    async def sleep(self, seconds: float) -> None:
        """asyncio's sleep."""
        await asyncio.sleep(seconds)
