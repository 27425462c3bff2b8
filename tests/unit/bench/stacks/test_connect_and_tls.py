"""Connecting: each checked address gets a share of the timeout; TLS is refused over bytes that came before it."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable

import httpcore2 as httpcore
import pytest

from service.bench.stacks.aionet import AsyncioBackend
from service.bench.stacks.transport import GuardedBackend
from service.outbound.guard import OutboundPolicy
from tests.support.outbound import FakeDNS, tcp_server
from tests.support.waiting import until


class _FirstAddressDropsPackets(AsyncioBackend):
    """127.0.0.2 behaves like an address that drops packets: it uses up whatever timeout it is given."""

    def __init__(self) -> None:
        self.tried: list[tuple[str, float | None]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.tried.append((host, timeout))
        if host == "127.0.0.2":
            await asyncio.sleep(timeout or 0)
            raise httpcore.ConnectTimeout("dropped")
        return await super().connect_tcp("127.0.0.1", port, timeout=timeout)


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def test_an_address_that_drops_packets_gets_only_its_share_of_the_connect_timeout() -> None:
    inner = _FirstAddressDropsPackets()
    dns = FakeDNS({"two.test": ["127.0.0.2", "127.0.0.1"]})
    backend = GuardedBackend(OutboundPolicy.from_allowlist(["127.0.0.0/8"]), dns, inner)
    async with tcp_server(_silent) as port:
        stream = await backend.connect_tcp("two.test", port, timeout=0.4)
        await stream.aclose()
    (first, first_timeout), (second, second_timeout) = inner.tried
    assert (first, second) == ("127.0.0.2", "127.0.0.1")
    assert first_timeout is not None and first_timeout <= 0.2 + 1e-6  # half of the 0.4 s, not all of it
    assert second_timeout is not None and second_timeout > 0


async def test_start_tls_refuses_a_connection_whose_peer_sent_bytes_before_the_handshake() -> None:
    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A man in the middle would inject this before the handshake; it must never be read as if it came over TLS.
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        await writer.drain()
        await reader.read()

    async with tcp_server(early) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        await until(lambda: bool(stream.get_extra_info("is_readable")))  # the early bytes are in the buffer
        with pytest.raises(httpcore.ConnectError, match="before the TLS handshake"):
            await stream.start_tls(ssl.create_default_context(), server_hostname="localhost", timeout=5)
        assert stream._transport.is_closing()  # type: ignore[attr-defined]
