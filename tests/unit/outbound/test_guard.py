"""The outbound URL policy: decisions as pure functions with a fake resolver; nothing here connects anywhere.

End to end, the policy is tested through the server's aiohttp session (``test_aio_session.py``) and through the
pools benchmark's httpx2 client (``tests/unit/bench/stacks/test_transport.py``), against loopback only.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import ForbiddenTarget, UpstreamError
from service.outbound.addresses import IPAddress, is_forbidden_address
from service.outbound.guard import OutboundPolicy, ParsedTarget, address_allowed, check_url, resolve_and_check
from tests.support.outbound import FakeDNS

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
NO_POLICY = OutboundPolicy()


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
