"""The asyncio network backend under httpcore (the pools benchmark's), against real loopback servers only."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import httpcore2 as httpcore
import pytest
import uvloop

from service.bench.stacks.aionet import AsyncioBackend
from tests.support.outbound import tcp_server


async def echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data.upper())
        await writer.drain()


async def test_bytes_written_come_back_and_eof_reads_empty() -> None:
    async with tcp_server(echo_upper) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        await stream.write(b"hello", timeout=5)
        assert await stream.read(100, timeout=5) == b"HELLO"
        await stream.aclose()


async def test_a_read_returns_at_most_max_bytes_and_keeps_the_rest_in_order() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB: more than the buffer's high-water mark, so reads pause and resume

    async def send_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()

    async with tcp_server(send_all) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        await asyncio.sleep(0.05)  # let it all arrive before reading, to fill the buffer past its mark
        received = bytearray()
        while piece := await stream.read(7000, timeout=5):
            assert len(piece) <= 7000
            received += piece
        assert bytes(received) == payload
        await stream.aclose()


async def inert(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Neither reads nor writes until the test is over."""
    await asyncio.sleep(10)


async def test_a_silent_peer_makes_the_read_time_out() -> None:
    async with tcp_server(inert) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(100, timeout=0.05)
        await stream.aclose()


async def test_a_peer_that_never_reads_makes_the_write_time_out() -> None:
    async with tcp_server(inert) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)

        async def fill() -> None:
            for _ in range(1000):  # kernel buffers hold a few MiB; this is far more
                await stream.write(b"x" * 1024 * 1024, timeout=0.1)

        with pytest.raises(httpcore.WriteTimeout):
            await fill()
        await stream.aclose()


async def test_an_idle_connection_turns_readable_when_the_peer_closes_it() -> None:
    closed = asyncio.Event()

    async def close_soon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await closed.wait()

    async with tcp_server(close_soon) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        assert stream.get_extra_info("is_readable") is False
        closed.set()
        for _ in range(100):
            if stream.get_extra_info("is_readable"):
                break
            await asyncio.sleep(0.01)
        assert stream.get_extra_info("is_readable") is True
        assert await stream.read(100, timeout=5) == b""
        await stream.aclose()


async def test_extra_info_names_both_ends_and_the_socket() -> None:
    async with tcp_server(echo_upper) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
        assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
        sock = stream.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert stream.get_extra_info("ssl_object") is None
        assert stream.get_extra_info("unknown") is None
        await stream.aclose()


async def test_a_closed_port_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: the connection is refused
        with pytest.raises(httpcore.ConnectError):
            await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)


async def test_writing_to_a_closed_stream_is_a_write_error() -> None:
    async with tcp_server(echo_upper) as port:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        await stream.aclose()
        with pytest.raises(httpcore.WriteError):
            await stream.write(b"late", timeout=1)


async def test_unix_sockets_are_refused() -> None:
    with pytest.raises(httpcore.ConnectError):
        await AsyncioBackend().connect_unix_socket("/var/run/docker.sock")


async def test_an_http_pool_on_the_backend_reuses_one_connection_for_sequential_requests() -> None:
    connections = 0

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with tcp_server(http) as port, httpcore.AsyncConnectionPool(network_backend=AsyncioBackend()) as pool:
        for _ in range(5):
            response = await pool.request("GET", f"http://127.0.0.1:{port}/")
            assert (response.status, response.content) == (200, b"ok")
    assert connections == 1


@pytest.mark.parametrize(
    "scenario",
    [
        test_bytes_written_come_back_and_eof_reads_empty,
        test_a_read_returns_at_most_max_bytes_and_keeps_the_rest_in_order,
        test_a_silent_peer_makes_the_read_time_out,
        test_an_idle_connection_turns_readable_when_the_peer_closes_it,
        test_an_http_pool_on_the_backend_reuses_one_connection_for_sequential_requests,
    ],
)
def test_the_same_holds_on_uvloop_which_the_server_runs_on(scenario: Callable[[], Awaitable[None]]) -> None:
    async def checked() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        await scenario()

    uvloop.run(checked())
