"""The outbound URL policy: decisions as pure functions with a fake resolver; end to end only against loopback.

Nothing here connects to a non-loopback address: inward targets are decided without a connection, and the
end-to-end tests run a tiny HTTP server on 127.0.0.1 and map fake names onto it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpcore2 as httpcore
import httpx2 as httpx
import pytest
import uvloop
from hypothesis import given
from hypothesis import strategies as st

from service.errors import ForbiddenTarget, UpstreamError
from service.outbound.addresses import IPAddress, is_forbidden_address
from service.outbound.guard import OutboundPolicy, ParsedTarget, address_allowed, check_url, resolve_and_check
from service.outbound.transport import GuardedBackend, ShardedTransport, make_guarded_client, make_guarded_transport

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
NO_POLICY = OutboundPolicy()
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class FakeDNS:
    """A resolver from a fixed table that records what it was asked; unknown names do not resolve."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = table or {}
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


async def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"DNS was asked about {host}")


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


# ---------------------------------------------------------------- static URL check


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[::a9fe:a9fe]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",  # Teredo whose client is 169.254.169.254
        "http://100.100.100.200/",
        "http://100.64.0.1/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://127.0.0.1:8080/",
        "http://127.0.0.1./",
        "http://[::1]/",
        "http://localhost:8080/",
        "http://app.LOCALHOST./",
        "http://2852039166/",
        "http://0xA9FEA9FE/",
        "http://0251.0376.0251.0376/",
        "http://0x7f.0.0.1/",
        "http://127.1/",
        "http://1.2.3.4.5/",
        "http://user:pw@example.com/",
        "http://example.com\\@169.254.169.254/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_",
        "http:///path",
        "http:example.com",
        "//example.com/",
        "http://example.com:0/",
        "http://example.com:70000/",
        "http://exa mple.com/",
        "not a url at all",
    ],
)
def test_inward_or_malformed_urls_are_refused_without_dns(url: str) -> None:
    with pytest.raises(ForbiddenTarget):
        check_url(url, NO_POLICY)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.example.com/v1/embeddings", ParsedTarget("https", "api.example.com", 443)),
        ("http://API.Example.COM./x", ParsedTarget("http", "api.example.com", 80)),
        (f"http://{PUBLIC_V4}:8080/x?key=1", ParsedTarget("http", PUBLIC_V4, 8080)),
        (f"https://[{PUBLIC_V6}]/", ParsedTarget("https", PUBLIC_V6, 443)),
        ("https://bücher.example/", ParsedTarget("https", "xn--bcher-kva.example", 443)),
        ("http://internal.example:8080/", ParsedTarget("http", "internal.example", 8080)),  # judged once resolved
    ],
)
def test_public_urls_pass_the_static_check(url: str, expected: ParsedTarget) -> None:
    assert check_url(url, NO_POLICY) == expected


def test_a_refusal_names_the_host_but_never_the_credentials_or_query() -> None:
    with pytest.raises(ForbiddenTarget) as refused:
        check_url("http://admin:hunter2@api.example.com/?api_key=sk-secret", NO_POLICY)
    assert "api.example.com" in refused.value.message
    assert "hunter2" not in refused.value.message
    assert "sk-secret" not in refused.value.message


def test_an_allowlisted_ip_literal_passes_only_on_its_port() -> None:
    policy = OutboundPolicy.from_allowlist(["127.0.0.1:9000", "[::1]:9000"])
    assert check_url("http://127.0.0.1:9000/", policy).host == "127.0.0.1"
    assert check_url("http://[::1]:9000/", policy).host == "::1"
    with pytest.raises(ForbiddenTarget, match="loopback"):
        check_url("http://127.0.0.1:9001/", policy)


# ---------------------------------------------------------------- address classification


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::a9fe:a9fe", "metadata"),
        ("64:ff9b::a9fe:a9fe", "metadata"),
        ("2002:a9fe:a9fe::1", "metadata"),
        ("2001:0:4136:e378:8000:63bf:5601:5601", "metadata"),
        ("100.100.100.200", "metadata"),
        ("168.63.129.16", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("fe80::1%eth0", "link-local"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "cgnat"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.0.8", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("192.0.2.1", "documentation"),
        ("2001:db8::1", "documentation"),
        (f"::{PUBLIC_V4}", "reserved"),  # IPv4-compatible: deprecated even for a public address
        ("64:ff9b:1::a9fe:a9fe", "reserved"),
        ("2001:0:4136:e378:8000:63bf:a247:2bdd", "reserved"),  # Teredo to a public client
        ("3fff::1", "documentation"),
    ],
)
def test_inward_addresses_are_forbidden_with_their_reason(address: str, reason: str) -> None:
    assert is_forbidden_address(ip(address)) == reason


@pytest.mark.parametrize(
    "address",
    [
        PUBLIC_V4,
        "8.8.8.8",
        "172.32.0.1",
        "100.128.0.1",
        "169.255.0.1",
        PUBLIC_V6,
        f"::ffff:{PUBLIC_V4}",
        "64:ff9b::5db8:d822",
        "2002:5db8:d822::1",
    ],
)
def test_public_addresses_are_not_forbidden(address: str) -> None:
    assert is_forbidden_address(ip(address)) is None


@given(st.ip_addresses(v=4))
def test_ipv6_forms_that_embed_an_ipv4_share_its_verdict(v4: ipaddress.IPv4Address) -> None:
    verdict = is_forbidden_address(v4)
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(v4))
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80) | 1)
    assert is_forbidden_address(mapped) == is_forbidden_address(nat64) == is_forbidden_address(sixtofour) == verdict


@given(st.ip_addresses())
def test_every_address_python_calls_non_global_is_forbidden(address: IPAddress) -> None:
    if not address.is_global:
        assert is_forbidden_address(address) is not None


# ---------------------------------------------------------------- allowlist


def test_the_allowlist_reads_hosts_host_ports_and_cidrs() -> None:
    policy = OutboundPolicy.from_allowlist(
        [
            "api.example.com",
            " Internal.Example. ",
            "127.0.0.1:9000",
            "[::1]:9000",
            "localhost:8080",
            "10.0.0.0/8",
            "::1/128",
            "192.168.1.5",
            "fd00::1",
        ]
    )
    assert policy.hosts == {"api.example.com", "internal.example"}
    assert policy.host_ports == {("127.0.0.1", 9000), ("::1", 9000), ("localhost", 8080)}
    assert [str(n) for n in policy.networks] == ["10.0.0.0/8", "::1/128", "192.168.1.5/32", "fd00::1/128"]


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "10.0.0.1/8",
        "300.0.0.0/8",
        "10.0.0.0/33",
        "host:",
        "host:0",
        "host:99999",
        "host:http",
        "[::1",
        "[1.2.3.4]:80",
        "[::1]:",
        "a b",
        "user@host",
        "http://example.com",
        "2852039166",
        "0x7f.1",
        "-bad-.example",
    ],
)
def test_a_bad_allowlist_entry_is_a_value_error_naming_it(entry: str) -> None:
    with pytest.raises(ValueError, match="allowlist entry") as error:
        OutboundPolicy.from_allowlist(["api.example.com", entry])
    assert repr(entry) in str(error.value)


def test_one_string_is_not_an_allowlist() -> None:
    with pytest.raises(TypeError):
        OutboundPolicy.from_allowlist("10.0.0.0/8")


@pytest.mark.parametrize(
    ("address", "port", "host", "allowed"),
    [
        ("10.1.2.3", 443, "db.internal", True),  # CIDR
        ("::ffff:10.1.2.3", 443, "db.internal", True),  # a mapped address is its IPv4
        ("11.0.0.1", 443, "db.internal", False),
        ("192.168.0.7", 80, "API.Example.com.", True),  # host name, any port
        ("127.0.0.1", 8080, "localhost", True),  # host:port
        ("127.0.0.1", 8081, "localhost", False),
        ("127.0.0.1", 9000, "anything.test", True),  # ip:port
        ("127.0.0.1", 9001, "anything.test", False),
        ("::1", 9000, "::1", True),
        ("::1", 9001, "::1", False),
    ],
)
def test_the_allowlist_admits_by_cidr_host_or_host_port(address: str, port: int, host: str, allowed: bool) -> None:
    policy = OutboundPolicy.from_allowlist(
        ["10.0.0.0/8", "api.example.com", "localhost:8080", "127.0.0.1:9000", "[::1]:9000"]
    )
    assert address_allowed(ip(address), port, host, policy) is allowed


# ---------------------------------------------------------------- resolution


async def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(ForbiddenTarget, match=r"rebind\.test resolves to a loopback"):
        await resolve_and_check("rebind.test", 80, NO_POLICY, FakeDNS({"rebind.test": ["127.0.0.1"]}))


async def test_a_name_resolving_to_public_and_private_is_refused_not_filtered() -> None:
    dns = FakeDNS({"mixed.test": [PUBLIC_V4, "10.0.0.1"]})
    with pytest.raises(ForbiddenTarget, match="private"):
        await resolve_and_check("mixed.test", 443, NO_POLICY, dns)


async def test_a_public_name_returns_all_its_addresses_in_order_once_each() -> None:
    dns = FakeDNS({"api.example.com": [PUBLIC_V6, PUBLIC_V4, PUBLIC_V6]})
    assert await resolve_and_check("api.example.com", 443, NO_POLICY, dns) == [ip(PUBLIC_V6), ip(PUBLIC_V4)]
    assert dns.asked == [("api.example.com", 443)]


@pytest.mark.parametrize(
    ("entry", "port", "allowed"),
    [
        ("127.0.0.1/32", 80, True),
        ("rebind.test", 80, True),
        ("REBIND.test.:80", 80, True),
        ("rebind.test:81", 80, False),
        ("10.0.0.0/8", 80, False),
    ],
)
async def test_the_allowlist_admits_a_resolved_inward_name(entry: str, port: int, allowed: bool) -> None:
    policy = OutboundPolicy.from_allowlist([entry])
    dns = FakeDNS({"rebind.test": ["127.0.0.1"]})
    if allowed:
        assert await resolve_and_check("rebind.test", port, policy, dns) == [ip("127.0.0.1")]
    else:
        with pytest.raises(ForbiddenTarget):
            await resolve_and_check("rebind.test", port, policy, dns)


@pytest.mark.parametrize(("host", "outcome"), [(PUBLIC_V4, ip(PUBLIC_V4)), ("::1", None), ("169.254.169.254", None)])
async def test_ip_literals_skip_dns(host: str, outcome: IPAddress | None) -> None:
    if outcome is None:
        with pytest.raises(ForbiddenTarget):
            await resolve_and_check(host, 80, NO_POLICY, no_dns)
    else:
        assert await resolve_and_check(host, 80, NO_POLICY, no_dns) == [outcome]


@pytest.mark.parametrize("host", ["2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "127.1", "a%20b"])
async def test_numeric_or_malformed_hosts_are_refused_before_dns(host: str) -> None:
    with pytest.raises(ForbiddenTarget, match="numeric forms"):
        await resolve_and_check(host, 80, NO_POLICY, no_dns)


@pytest.mark.parametrize(("entry", "allowed"), [(None, False), ("127.0.0.1/32", True), ("app.localhost:80", True)])
async def test_localhost_names_mean_127_0_0_1_without_dns(entry: str | None, allowed: bool) -> None:
    policy = OutboundPolicy.from_allowlist([entry] if entry else [])
    if allowed:
        assert check_url("http://app.localhost/", policy).host == "app.localhost"
        assert await resolve_and_check("app.localhost", 80, policy, no_dns) == [ip("127.0.0.1")]
    else:
        with pytest.raises(ForbiddenTarget, match="loopback"):
            await resolve_and_check("app.localhost", 80, policy, no_dns)


async def test_an_unknown_name_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match=r"cannot resolve host nowhere\.test"):
        await resolve_and_check("nowhere.test", 80, NO_POLICY, FakeDNS())


@pytest.mark.parametrize("answer", [[], ["not-an-address"]])
async def test_an_empty_or_garbled_answer_is_refused(answer: list[str]) -> None:
    with pytest.raises((UpstreamError, ForbiddenTarget)):
        await resolve_and_check("odd.test", 80, NO_POLICY, FakeDNS({"odd.test": answer}))


# ---------------------------------------------------------------- the guarded httpx client, against loopback only


@dataclass
class Upstream:
    """A canned-answer HTTP/1.1 server on 127.0.0.1 that counts what reaches it."""

    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def upstream(answer: bytes = OK, tls: ssl.SSLContext | None = None) -> AsyncIterator[Upstream]:
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


# A throwaway CA and a certificate for "rebind.test" (valid 2000-2100), made with openssl for this test only.
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


@pytest.fixture
def tls_server_context(tmp_path: Path) -> tuple[ssl.SSLContext, list[str | None]]:
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
