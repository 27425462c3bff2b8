"""The server's outbound client on aiohttp (GuardedSession): the SSRF guard, timeouts, retries, limits, size caps.

Nothing here connects to a non-loopback address: refused targets are refused before any connection, names come
from a fake resolver, and every server is a tiny HTTP/1.1 one on 127.0.0.1 that counts its connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop

from service.config import Settings
from service.errors import ForbiddenTarget
from service.inference.registry import ModelRegistry, Phase
from service.jobs.chunking import Strategy
from service.jobs.targets import Job
from service.outbound.aio import GuardedSession, aiohttp_exchange
from service.outbound.exchange import Retryable
from service.outbound.guard import OutboundPolicy
from service.outbound.remote import RemoteClient, RemoteTarget, RetryPolicy, UpstreamCallError
from service.runtime import build_pipeline
from tests.support.outbound import TEST_CA, FakeDNS
from tests.support.outbound import upstream as tls_upstream
from tests.support.waiting import until

PUBLIC_V4 = "93.184.216.34"
LOOPBACK = OutboundPolicy.from_allowlist(["127.0.0.1"])
NO_POLICY = OutboundPolicy()


def answer(status: int = 200, body: bytes = b'{"ok":true}', headers: str = "") -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    return head.encode() + body


@dataclass
class Upstream:
    """A loopback HTTP/1.1 server: ``respond`` turns each request's body into the bytes sent back (None: hang up)."""

    respond: Callable[[Upstream, bytes], Awaitable[bytes | None]]
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    hang_up_after_answer: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # set when the test is done with the server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/x"


async def _canned(up: Upstream, body: bytes) -> bytes:
    return answer()


@asynccontextmanager
async def upstream(respond: Callable[[Upstream, bytes], Awaitable[bytes | None]] = _canned) -> AsyncIterator[Upstream]:
    state = Upstream(respond)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                state.requests.append(head)
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length")
                    ),
                    0,
                )
                body = await reader.readexactly(length)
                state.in_flight += 1
                state.most_in_flight = max(state.most_in_flight, state.in_flight)
                try:
                    out = await state.respond(state, body)
                finally:
                    state.in_flight -= 1
                if out is None:
                    return
                writer.write(out)
                await writer.drain()
                if state.hang_up_after_answer:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    handlers: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            handlers.add(task)
        writers.append(writer)
        await handle(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        try:
            yield state
        finally:
            # Every handler ends on its own (asyncio logs one that ends cancelled): held answers are released,
            # idle connections cut.
            state.stop.set()
            for writer in writers:
                writer.transport.abort()
            await asyncio.gather(*handlers)


@asynccontextmanager
async def remote_client(
    policy: OutboundPolicy = LOOPBACK,
    resolver: FakeDNS | None = None,
    *,
    attempts: int = 2,
    per_host_limit: int = 64,
    max_response_bytes: int = 4 * 1024 * 1024,
) -> AsyncIterator[RemoteClient]:
    session = GuardedSession(policy, resolver=resolver)
    retry = RetryPolicy(attempts=attempts, backoff_base_s=0.001, backoff_max_s=0.001)
    try:
        yield RemoteClient(session, retry=retry, per_host_limit=per_host_limit, max_response_bytes=max_response_bytes)
    finally:
        await session.aclose()


async def call(remote: RemoteClient, url: str, text: str = "text", timeout_s: float = 5) -> object:
    return (await remote.call(RemoteTarget(url=url), text, timeout_s=timeout_s)).value


# ---------------------------------------------------------------- the guard on the aiohttp path


@pytest.fixture(autouse=True)
async def loopback_only() -> AsyncIterator[list[str]]:
    """Every connection this module's tests open goes to loopback, even if the guard under test regressed."""
    loop = asyncio.get_running_loop()
    real = loop.sock_connect
    tried: list[str] = []

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        tried.append(address[0])
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise AssertionError(f"a test tried to connect to {address[0]}")
        await real(sock, address)

    loop.sock_connect = sock_connect  # type: ignore[method-assign]
    try:
        yield tried
    finally:
        del loop.sock_connect  # the class's own again


async def test_an_allowlisted_loopback_server_is_reached(loopback_only: list[str]) -> None:
    async with upstream() as up, remote_client() as remote:
        assert await call(remote, up.url) == {"ok": True}
    assert up.connections == 1
    assert loopback_only == ["127.0.0.1"]  # the fixture sees every connection


async def test_loopback_without_allowlist_is_refused_and_never_connected() -> None:
    async with upstream() as up, remote_client(NO_POLICY) as remote:
        with pytest.raises(ForbiddenTarget, match="loopback"):
            await call(remote, up.url)
        with pytest.raises(ForbiddenTarget, match="loopback"):
            await call(remote, f"http://[::ffff:127.0.0.1]:{up.port}/x")
    assert up.connections == 0


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://10.0.0.1/", "ftp://x.test/"]
)
async def test_inward_literals_and_other_schemes_are_refused_before_any_connection(url: str) -> None:
    dns = FakeDNS({})
    async with remote_client(NO_POLICY, dns) as remote:
        with pytest.raises(ForbiddenTarget):
            await call(remote, url)
    assert dns.hosts == []


async def test_a_name_rebound_to_loopback_is_refused_and_nothing_connects() -> None:
    dns = FakeDNS({"rebind.test": ["127.0.0.1"]})
    async with upstream() as up, remote_client(NO_POLICY, dns) as remote:
        with pytest.raises(ForbiddenTarget, match=r"rebind\.test resolves to a loopback"):
            await call(remote, f"http://rebind.test:{up.port}/x")
    assert (up.connections, dns.hosts) == (0, ["rebind.test"])  # a refusal is not retried


async def test_a_name_with_one_inward_address_among_public_ones_is_refused_whole() -> None:
    dns = FakeDNS({"mixed.test": [PUBLIC_V4, "10.1.2.3"]})
    async with remote_client(NO_POLICY, dns) as remote:
        with pytest.raises(ForbiddenTarget, match="private"):
            await call(remote, "http://mixed.test/x")


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1"])
async def test_numeric_host_forms_are_refused_and_never_connected(host: str) -> None:
    async with upstream() as up, remote_client(OutboundPolicy.from_allowlist(["127.0.0.0/8"]), FakeDNS({})) as remote:
        with pytest.raises((ForbiddenTarget, UpstreamCallError)):
            await call(remote, f"http://{host}:{up.port}/x")
    assert up.connections == 0


async def test_the_checked_address_is_the_one_connected_to_and_each_new_connection_is_checked() -> None:
    async def close_after(up: Upstream, body: bytes) -> bytes:
        return answer(headers="Connection: close\r\n")

    # "rebind.test" exists only in the fake resolver: reaching the server proves the checked address was used.
    dns = FakeDNS({"rebind.test": ["127.0.0.1"]})
    async with upstream(close_after) as up, remote_client(LOOPBACK, dns) as remote:
        for _ in range(2):
            assert await call(remote, f"http://rebind.test:{up.port}/x") == {"ok": True}
    assert f"host: rebind.test:{up.port}".encode() in up.requests[0].lower()
    assert (up.connections, dns.hosts) == (2, ["rebind.test", "rebind.test"])  # no DNS cache between connections


async def test_a_redirect_is_a_failed_chunk_not_followed() -> None:
    async def redirect(up: Upstream, body: bytes) -> bytes:
        return answer(302, b"", "Location: http://169.254.169.254/\r\n")

    async with upstream(redirect) as up, remote_client() as remote:
        with pytest.raises(UpstreamCallError) as failure:
            await call(remote, up.url)
    assert (failure.value.kind, failure.value.message) == ("status", "127.0.0.1: HTTP 302")
    assert len(up.requests) == 1


async def test_environment_proxies_and_cookies_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")

    async def with_cookie(up: Upstream, body: bytes) -> bytes:
        return answer(headers="Set-Cookie: session=secret\r\n")

    async with upstream(with_cookie) as up, remote_client() as remote:
        for _ in range(2):
            assert await call(remote, up.url) == {"ok": True}
    assert b"secret" not in up.requests[1]


# ---------------------------------------------------------------- timeouts, retries, limits, size caps


async def test_no_answer_in_time_is_a_timeout_and_not_retried() -> None:
    async def hang(up: Upstream, body: bytes) -> bytes | None:
        await up.stop.wait()
        return None

    async with upstream(hang) as up, remote_client(attempts=3) as remote:
        with pytest.raises(UpstreamCallError) as failure:
            await call(remote, up.url, timeout_s=0.2)
    assert (failure.value.kind, failure.value.attempts) == ("timeout", 1)
    assert failure.value.message.startswith("127.0.0.1: no answer within 0.2 s")


async def test_an_answer_that_stalls_mid_body_is_a_timeout() -> None:
    async def stall(up: Upstream, body: bytes) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"

    async with upstream(stall) as up, remote_client() as remote:
        with pytest.raises(UpstreamCallError) as failure:
            await call(remote, up.url, timeout_s=0.2)
    assert (failure.value.kind, failure.value.message) == ("timeout", "127.0.0.1: answer not complete within 0.2 s")


async def test_503_then_200_is_retried_and_counted() -> None:
    async def flaky(up: Upstream, body: bytes) -> bytes:
        return answer(503, b"{}", "Retry-After: 0\r\n") if len(up.requests) == 1 else answer()

    async with upstream(flaky) as up, remote_client(attempts=3) as remote:
        result = await remote.call(RemoteTarget(url=up.url), "t", timeout_s=5)
    assert (result.value, result.attempts, remote.stats.retries) == ({"ok": True}, 2, 1)


async def test_a_connection_broken_mid_answer_is_retried_then_fails_as_connect() -> None:
    async def broken(up: Upstream, body: bytes) -> bytes | None:
        up.hang_up_after_answer = True
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"

    async def hang_up(up: Upstream, body: bytes) -> bytes | None:
        return None

    for respond in (broken, hang_up):
        async with upstream(respond) as up, remote_client(attempts=2) as remote:
            with pytest.raises(UpstreamCallError) as failure:
                await call(remote, up.url)
        assert (failure.value.kind, failure.value.attempts, len(up.requests)) == ("connect", 2, 2)


async def test_nothing_listening_is_a_connect_failure_after_every_attempt() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # a port nothing listens on
    async with remote_client(attempts=2) as remote:
        with pytest.raises(UpstreamCallError) as failure:
            await call(remote, f"http://127.0.0.1:{port}/x")
    assert (failure.value.kind, failure.value.attempts) == ("connect", 2)


async def test_the_per_host_limit_holds_with_calls_waiting() -> None:
    gate = asyncio.Event()

    async def held(up: Upstream, body: bytes) -> bytes:
        await gate.wait()
        return answer()

    async with upstream(held) as up, remote_client(per_host_limit=2) as remote:
        calls = [asyncio.create_task(call(remote, up.url, text=str(i))) for i in range(6)]
        await until(lambda: up.in_flight == 2 and remote._limits["127.0.0.1"].users == 6)
        gate.set()
        assert await asyncio.gather(*calls) == [{"ok": True}] * 6
    assert up.most_in_flight == 2
    assert remote.hosts_tracked == 0


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_over_the_cap_is_too_large(chunked: bool) -> None:
    big = b'{"v":"' + b"x" * 5000 + b'"}'

    async def respond(up: Upstream, body: bytes) -> bytes:
        if not chunked:
            return answer(body=big)
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)

    async with upstream(respond) as up, remote_client(max_response_bytes=10_000) as remote:
        ok = await remote.call(RemoteTarget(url=up.url), "t", timeout_s=5)
        assert ok.size == len(big)
        with pytest.raises(UpstreamCallError) as failure:
            await remote.call(RemoteTarget(url=up.url), "t", timeout_s=5, max_bytes=1000)
    assert failure.value.kind == "too_large" and "1000-byte" in failure.value.message
    async with upstream(respond) as up, remote_client(max_response_bytes=4096) as remote:
        with pytest.raises(UpstreamCallError) as failure:
            await call(remote, up.url)
    assert failure.value.kind == "too_large" and "4096-byte" in failure.value.message


async def test_a_body_that_does_not_match_its_content_encoding_is_malformed() -> None:
    async def respond(up: Upstream, body: bytes) -> bytes:
        return answer(body=b"not gzip at all", headers="Content-Encoding: gzip\r\n")

    async with upstream(respond) as up, remote_client() as remote:
        with pytest.raises(UpstreamCallError) as failure:
            await call(remote, up.url)
    assert failure.value.kind == "malformed"


async def test_the_body_sent_is_the_protocols_json() -> None:
    seen: list[bytes] = []

    async def record(up: Upstream, body: bytes) -> bytes:
        seen.append(body)
        return answer()

    async with upstream(record) as up, remote_client() as remote:
        await call(remote, up.url, text="héllo")
    assert json.loads(seen[0]) == {"text": "héllo"}
    assert b"content-type: application/json" in up.requests[0].lower()


# ---------------------------------------------------------------- a job through the server's pipeline


async def test_a_job_fails_only_the_chunks_whose_calls_failed() -> None:
    async def some_fail(up: Upstream, body: bytes) -> bytes:
        text = json.loads(body)["text"]
        return answer(400, b"{}") if "7" in text else answer(body=json.dumps({"echo": text}).encode())

    async with upstream(some_fail) as up:
        settings = Settings(remote_allowlist=["127.0.0.1"], remote_per_host_limit=8, job_window=16)
        pipeline, http = build_pipeline(settings, ModelRegistry(expected=[], phase=Phase.READY))
        try:
            text = "".join(f"{i:04d}" for i in range(40))  # 40 chunks of four digits
            job = Job(
                text=text, chunking=Strategy.CHARS, chunk_size=4, targets=(RemoteTarget(url=up.url),), timeout_s=10
            )
            results = await pipeline.collect(await pipeline.prepare(job))
        finally:
            await http.aclose()
    assert [r.index for r in results] == list(range(40))
    failed = {r.index for r in results if not r.success}
    assert failed == {i for i in range(40) if "7" in f"{i:04d}"}
    assert all(r.error is not None and r.error.type == "status" for r in results if not r.success)
    assert all(r.result == {"echo": f"{r.index:04d}"} for r in results if r.success)


# ---------------------------------------------------------------- TLS: the URL's host verified, checked address used


@pytest.mark.parametrize(("name", "verifies"), [("rebind.test", True), ("other.test", False)])
async def test_tls_verifies_the_url_host_while_connecting_to_the_checked_address(
    tls_server_context: tuple[ssl.SSLContext, list[str | None]], name: str, verifies: bool
) -> None:
    server_context, sni_names = tls_server_context
    verify = ssl.create_default_context(cadata=TEST_CA)
    session = GuardedSession(LOOPBACK, resolver=FakeDNS({name: ["127.0.0.1"]}), verify=verify)
    try:
        async with tls_upstream(tls=server_context) as up:
            url = f"https://{name}:{up.port}/"
            if verifies:
                got = await aiohttp_exchange(session, url, b"{}", {}, 5, 1000)
                assert (got.status, got.body) == (200, b"ok")
            else:
                with pytest.raises(Retryable, match="connection failed"):
                    await aiohttp_exchange(session, url, b"{}", {}, 5, 1000)
    finally:
        await session.aclose()
    assert sni_names == [name]


def test_tls_through_the_guard_works_on_uvloop_too(tls_server_context: tuple[ssl.SSLContext, list[str | None]]) -> None:
    uvloop.run(
        test_tls_verifies_the_url_host_while_connecting_to_the_checked_address(tls_server_context, "rebind.test", True)
    )


async def test_a_targets_own_content_type_is_sent_alone() -> None:
    async with upstream() as up, remote_client() as remote:
        target = RemoteTarget(url=up.url, headers=(("content-type", "application/json; charset=utf-8"),))
        await remote.call(target, "t", timeout_s=5)
    lines = [line for line in up.requests[0].lower().split(b"\r\n") if line.startswith(b"content-type:")]
    assert lines == [b"content-type: application/json; charset=utf-8"]
