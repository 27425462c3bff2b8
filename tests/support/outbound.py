"""Loopback stand-ins for outbound tests: a fake resolver, TCP and canned-answer HTTP servers, a throwaway CA.

Nothing here reaches beyond 127.0.0.1: names exist only in ``FakeDNS``'s table.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class FakeDNS:
    """A resolver from a fixed table that records what it was asked; unknown names do not resolve."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = table or {}
        self.asked: list[tuple[str, int]] = []

    @property
    def hosts(self) -> list[str]:
        """The names asked about, in order."""
        return [host for host, _ in self.asked]

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[int]:
    """A loopback TCP server running ``handler`` per connection; yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    srv = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await srv.wait_closed()


@dataclass
class Upstream:
    """A canned-answer HTTP/1.1 server on 127.0.0.1 that counts what reaches it."""

    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def upstream(answer: bytes = OK, tls: ssl.SSLContext | None = None) -> AsyncIterator[Upstream]:
    """Answer every connection's first request head with ``answer`` (over TLS with ``tls``), then close it."""
    state = Upstream()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            state.requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state


# A throwaway CA and a certificate for "rebind.test" (valid 2000-2100), made with openssl for these tests only.
TEST_CA = """-----BEGIN CERTIFICATE-----
MIIBbjCCAROgAwIBAgIBATAKBggqhkjOPQQDAjAdMRswGQYDVQQDDBJjaHVua3Nl
cnZlIHRlc3QgQ0EwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMB0x
GzAZBgNVBAMMEmNodW5rc2VydmUgdGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABG57Gtg85sGiznvvv/aUoXDh1/HPZCeZTrTflewt3SnVwrSz2RV40+2+
54zKQ7Wawa92EVtAhxuLksWpuHkqpr2jQjBAMA8GA1UdEwEB/wQFMAMBAf8wDgYD
VR0PAQH/BAQDAgEGMB0GA1UdDgQWBBR56mo4ReVAgfLPeNNsaVsGva/5QzAKBggq
hkjOPQQDAgNJADBGAiEA7x5Tiyf1Y2E3neBKnHlwan92iVg3qn4q5iOu5M/ew5AC
IQDY9T57d1BCWQ5B9RpMtjPXp/garT25bSxi5h9BzF6Bqg==
-----END CERTIFICATE-----
"""
TEST_LEAF = """-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIBAjAKBggqhkjOPQQDAjAdMRswGQYDVQQDDBJjaHVua3Nl
cnZlIHRlc3QgQ0EwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMBYx
FDASBgNVBAMMC3JlYmluZC50ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
lKft1Cx0zgjvItGobYXaW1VQbCAhAS89YWDgCmZQlTM4ALQPTJ8+gqtrflsA9Pt7
fXWsbq3F99BnEBrYZY3LKqOBjjCBizAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQE
AwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAWBgNVHREEDzANggtyZWJpbmQudGVz
dDAdBgNVHQ4EFgQUVXGOc0YM0llpDF5baoFrT5W8wQMwHwYDVR0jBBgwFoAUeepq
OEXlQIHyz3jTbGlbBr2v+UMwCgYIKoZIzj0EAwIDSAAwRQIgd68QVXGf2JxyyZv/
b9DsP+xe1arK/2zks8AwgVFIadMCIQCCl5qLkCt3V5UGfTwFNIfBB6ul0TIZ1pm4
U4efoT3ZoA==
-----END CERTIFICATE-----
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgkpBsxr0LCXOLW7vy
ei4Swa1m2k1m6l4Q+zrefFNc6bShRANCAASUp+3ULHTOCO8i0ahthdpbVVBsICEB
Lz1hYOAKZlCVMzgAtA9Mnz6Cq2t+WwD0+3t9daxurcX30GcQGthljcsq
-----END PRIVATE KEY-----
"""


def sni_recording_context(tmp_path: Path) -> tuple[ssl.SSLContext, list[str | None]]:
    """A server context for "rebind.test" and the SNI names it is shown."""
    pem = tmp_path / "rebind.pem"
    pem.write_text(TEST_LEAF)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    names: list[str | None] = []

    def remember(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = remember
    return context, names
