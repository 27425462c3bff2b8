"""The pools benchmark's httpx2 client (``service/bench/stacks/transport.py``): the SSRF guard at connect time and
sharded pools, end to end against loopback servers only (fake names map onto 127.0.0.1)."""

from __future__ import annotations

import asyncio
import ssl

import httpcore2 as httpcore
import httpx2 as httpx
import pytest
import uvloop

from service.bench.stacks.transport import GuardedBackend, ShardedTransport, make_guarded_client, make_guarded_transport
from service.errors import ForbiddenTarget
from service.outbound.guard import OutboundPolicy
from tests.support.outbound import TEST_CA, FakeDNS, upstream

NO_POLICY = OutboundPolicy()


async def test_an_allowlisted_loopback_server_is_reached() -> None:
    async with upstream() as up, make_guarded_client(OutboundPolicy.from_allowlist(["127.0.0.1"]), timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{up.port}/hello")
    assert (response.status_code, response.text, up.connections) == (200, "ok", 1)


async def test_loopback_without_allowlist_raises_forbidden_target_and_never_connects() -> None:
    async with upstream() as up, make_guarded_client(NO_POLICY, timeout=5, retries=2) as client:
        with pytest.raises(ForbiddenTarget) as refused:
            await client.get(f"http://127.0.0.1:{up.port}/")
    assert not isinstance(refused.value, httpx.HTTPError)  # httpx passes the backend's error through unchanged
    assert up.connections == 0


async def test_a_name_rebound_to_loopback_is_refused_and_nothing_connects() -> None:
    dns = FakeDNS({"rebind.test": ["127.0.0.1"]})
    async with upstream() as up, make_guarded_client(NO_POLICY, timeout=5, resolver=dns, retries=2) as client:
        with pytest.raises(ForbiddenTarget, match=r"rebind\.test resolves to a loopback"):
            await client.get(f"http://rebind.test:{up.port}/")
    assert up.connections == 0
    assert len(dns.asked) == 1  # a refusal is not retried


async def test_the_checked_address_is_the_one_connected_to() -> None:
    # "rebind.test" exists only in the fake resolver, so reaching the server proves the checked IP was used.
    dns = FakeDNS({"rebind.test": ["127.0.0.1"]})
    policy = OutboundPolicy.from_allowlist(["127.0.0.1/32"])
    async with upstream() as up, make_guarded_client(policy, timeout=5, resolver=dns) as client:
        response = await client.get(f"http://rebind.test:{up.port}/")
    assert response.status_code == 200
    assert f"host: rebind.test:{up.port}".encode() in up.requests[0].lower()


async def test_a_redirect_inward_is_returned_not_followed() -> None:
    answer = b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n"
    async with (
        upstream(answer) as up,
        make_guarded_client(OutboundPolicy.from_allowlist(["127.0.0.1"]), timeout=5) as client,
    ):
        response = await client.get(f"http://127.0.0.1:{up.port}/")
    assert response.status_code == 302
    assert (up.connections, len(up.requests)) == (1, 1)


async def test_a_redirect_followed_anyway_is_checked_again_at_connect_time() -> None:
    async with upstream() as inner:
        answer = f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{inner.port}/\r\nContent-Length: 0\r\n\r\n"
        async with upstream(answer.encode()) as outer:
            policy = OutboundPolicy.from_allowlist([f"127.0.0.1:{outer.port}"])
            async with make_guarded_client(policy, timeout=5) as client:
                with pytest.raises(ForbiddenTarget):
                    await client.get(f"http://127.0.0.1:{outer.port}/", follow_redirects=True)
    assert (outer.connections, inner.connections) == (1, 0)


async def test_environment_proxies_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    async with upstream() as up, make_guarded_client(OutboundPolicy.from_allowlist(["127.0.0.1"]), timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{up.port}/")
    assert (response.status_code, up.connections) == (200, 1)


async def test_the_next_checked_address_is_tried_when_one_refuses() -> None:
    dns = FakeDNS({"two.test": ["127.0.0.2", "127.0.0.1"]})  # the server listens on 127.0.0.1 only
    policy = OutboundPolicy.from_allowlist(["127.0.0.0/8"])
    async with upstream() as up, make_guarded_client(policy, timeout=5, resolver=dns) as client:
        response = await client.get(f"http://two.test:{up.port}/")
    assert (response.status_code, up.connections) == (200, 1)


async def test_unresolvable_names_and_slow_dns_surface_as_httpx_connect_errors() -> None:
    async def stalled(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        return []

    timeout = httpx.Timeout(5, connect=0.05)
    async with make_guarded_client(NO_POLICY, timeout=timeout, resolver=FakeDNS()) as client:
        with pytest.raises(httpx.ConnectError, match=r"cannot resolve host nowhere\.test"):
            await client.get("http://nowhere.test/")
    async with make_guarded_client(NO_POLICY, timeout=timeout, resolver=stalled) as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.get("http://slow.test/")


async def test_the_backend_refuses_unix_sockets() -> None:
    with pytest.raises(ForbiddenTarget):
        await GuardedBackend(NO_POLICY).connect_unix_socket("/var/run/docker.sock")


def test_the_guard_replaces_the_httpx_transport_pool_with_equal_settings() -> None:
    # Pins the one httpx internal relied on: AsyncHTTPTransport sends every request through self._pool.
    limits = httpx.Limits(max_connections=7, max_keepalive_connections=3, keepalive_expiry=9)
    transport = make_guarded_transport(NO_POLICY, limits=limits, retries=2)
    pool = transport._pool
    assert type(pool) is httpcore.AsyncConnectionPool
    assert isinstance(pool._network_backend, GuardedBackend)
    assert (pool._max_connections, pool._max_keepalive_connections, pool._keepalive_expiry) == (7, 3, 9)
    assert pool._retries == 2


def test_a_client_for_many_calls_spreads_its_connections_over_small_pools() -> None:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=1000)
    client = make_guarded_client(NO_POLICY, timeout=5, limits=limits, concurrency=1000)
    transport = client._transport
    assert isinstance(transport, ShardedTransport)
    assert len(transport.shards) == 125  # ceil(1000 / 8)
    pools = [shard._pool for shard in transport.shards]  # type: ignore[attr-defined]
    assert all(isinstance(pool._network_backend, GuardedBackend) for pool in pools)
    assert {pool._max_keepalive_connections for pool in pools} == {8}
    assert isinstance(make_guarded_client(NO_POLICY, timeout=5)._transport, httpx.AsyncHTTPTransport)


async def test_sharded_requests_take_turns_and_all_arrive() -> None:
    policy = OutboundPolicy.from_allowlist(["127.0.0.1"])
    async with upstream() as up, make_guarded_client(policy, timeout=5, concurrency=24) as client:
        transport = client._transport
        assert isinstance(transport, ShardedTransport)
        responses = await asyncio.gather(*(client.get(f"http://127.0.0.1:{up.port}/{i}") for i in range(6)))
        used = [len(shard._pool.connections) for shard in transport.shards]  # type: ignore[attr-defined]
    assert [r.text for r in responses] == ["ok"] * 6
    assert sorted(int(r.split(b" ")[1][1:]) for r in up.requests) == list(range(6))
    assert len(used) == 3 and sum(used) <= 6


@pytest.mark.parametrize(("name", "verifies"), [("rebind.test", True), ("other.test", False)])
async def test_tls_verifies_the_url_host_while_connecting_to_the_checked_address(
    tls_server_context: tuple[ssl.SSLContext, list[str | None]], name: str, verifies: bool
) -> None:
    server_context, sni_names = tls_server_context
    dns = FakeDNS({name: ["127.0.0.1"]})
    client_context = ssl.create_default_context(cadata=TEST_CA)
    policy = OutboundPolicy.from_allowlist(["127.0.0.1/32"])
    async with (
        upstream(tls=server_context) as up,
        make_guarded_client(policy, timeout=5, resolver=dns, verify=client_context) as client,
    ):
        if verifies:
            assert (await client.get(f"https://{name}:{up.port}/")).text == "ok"
        else:
            with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
                await client.get(f"https://{name}:{up.port}/")
    assert sni_names == [name]


def test_tls_through_the_guard_works_on_uvloop_too(tls_server_context: tuple[ssl.SSLContext, list[str | None]]) -> None:
    uvloop.run(
        test_tls_verifies_the_url_host_while_connecting_to_the_checked_address(tls_server_context, "rebind.test", True)
    )
