"""The outbound URL policy (SSRF guard): which remote addresses a client-given URL may reach.

Everything public is allowed; loopback, private, link-local, CGNAT, metadata, multicast and reserved addresses are
refused unless the allowlist names them (``service/outbound/addresses.py`` classifies the addresses). Two layers use the
same rules:

* ``check_url`` and ``resolve_and_check`` refuse a target early, before any work is planned;
* the server's aiohttp session (``service/outbound/aio.py``) checks again at connect time: its resolver resolves
  through ``resolve_and_check`` and hands aiohttp only checked addresses, and IP-literal hosts (which aiohttp never
  resolves) go through ``check_literal`` as aiohttp's URL parser reads them;
* ``make_guarded_client`` (the httpx2 client of the pools benchmark, ``service/bench/stacks/transport.py``) checks
  again at connect time, inside httpcore: ``GuardedBackend.connect_tcp`` resolves the name, checks every address,
  then connects to a checked address itself, so DNS rebinding between the check and the connection has nothing to
  exploit. TLS still verifies (and sends SNI for) the URL's host name, because httpcore takes it from the request
  origin, not from the stream. A refusal there reaches the caller of ``client.get()`` as ``ForbiddenTarget`` itself
  (httpx re-raises exceptions that are not httpcore's unchanged).

``localhost`` and ``*.localhost`` mean 127.0.0.1 without asking DNS (RFC 6761 reserves them for loopback).

Numeric hosts: a host whose last label is a number (``2852039166``, ``0xA9FEA9FE``, ``0251.0376.0251.0376``,
``127.1``) but is not a canonical dotted-quad is refused outright, never normalised: libc, browsers and Python
disagree on what such a host means, and no real API is addressed that way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

# The same URL parser as the client that connects: no parser differential between check and use.
import httpx2 as httpx

from service.errors import ForbiddenTarget, UpstreamError
from service.outbound.addresses import IPAddress, Network, is_forbidden_address, plain_address

Resolver = Callable[[str, int], Awaitable[list[str]]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_LOCALHOST = ipaddress.IPv4Address("127.0.0.1")


def _host_kind(host: str) -> IPAddress | str | None:
    """The host as an address, or as a lower-case name without its trailing dot; None for numeric or bad hosts."""
    host = host.lower().removesuffix(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    labels = host.split(".")
    if len(host) > 253 or _NUMERIC_LABEL.fullmatch(labels[-1]) or not all(map(_LABEL.fullmatch, labels)):
        return None
    return host


def _is_localhost(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")


def _bad_host(host: str) -> ForbiddenTarget:
    return ForbiddenTarget(
        f"host {host[:100]!r} is neither a dotted IPv4/IPv6 address nor a DNS name "
        "(numeric forms such as 2852039166, 0x7f.1 or 0177.0.0.1 are refused)"
    )


@dataclass(frozen=True)
class OutboundPolicy:
    """Which non-public addresses outbound calls may still reach; an empty policy refuses them all."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()
    host_ports: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def from_allowlist(cls, entries: Sequence[str]) -> OutboundPolicy:
        """Build from entries such as "api.example.com", "127.0.0.1:9000", "[::1]:9000" or "10.0.0.0/8".

        Raises:
            ValueError: an entry is not a host, host:port or CIDR (the message names it).
            TypeError: ``entries`` is one string rather than a list of them.
        """
        if isinstance(entries, str):
            raise TypeError("pass the allowlist as a list of entries, not one string")
        networks: list[Network] = []
        hosts: set[str] = set()
        host_ports: set[tuple[str, int]] = set()
        for raw in entries:
            entry = raw.strip()
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry))
                except ValueError:
                    raise ValueError(f"outbound allowlist entry {raw!r} is not a CIDR like 10.0.0.0/8") from None
                continue
            host, port = _split_host_port(raw, entry)
            kind = _host_kind(host) if host.isascii() else _host_kind(_idna(raw, host))
            if kind is None:
                raise ValueError(f"outbound allowlist entry {raw!r}: {host!r} is not an IP address or DNS name")
            if isinstance(kind, str):
                key = kind
            else:
                kind = plain_address(kind)
                key = str(kind)
            if port is not None:
                host_ports.add((key, port))
            elif isinstance(kind, str):
                hosts.add(kind)
            else:
                networks.append(ipaddress.ip_network(kind))
        return cls(tuple(networks), frozenset(hosts), frozenset(host_ports))


def _split_host_port(raw: str, entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d{1,5}))?", entry)
        if match is None:
            raise ValueError(f"outbound allowlist entry {raw!r} is not [IPv6] or [IPv6]:port")
        host, port_text = match[1], match[2] or ""
        if not isinstance(_host_kind(host), ipaddress.IPv6Address):
            raise ValueError(f"outbound allowlist entry {raw!r}: only IPv6 addresses go in brackets")
    elif entry.count(":") > 1:
        host, port_text = entry, ""
    else:
        host, sep, port_text = entry.partition(":")
        if sep and not port_text:
            raise ValueError(f"outbound allowlist entry {raw!r} has an empty port")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"outbound allowlist entry {raw!r} has a port outside 1-65535")
    return host, int(port_text)


def _idna(raw: str, host: str) -> str:
    try:
        return httpx.URL(f"http://{host}/").raw_host.decode("ascii")
    except httpx.InvalidURL:
        raise ValueError(f"outbound allowlist entry {raw!r} is not a valid international host name") from None


def address_allowed(ip: IPAddress, port: int, host: str, policy: OutboundPolicy) -> bool:
    """Whether the allowlist admits ``ip`` (by CIDR), ``host`` (by name) or either of them on ``port``."""
    ip = plain_address(ip)
    if any(ip.version == net.version and ip in net for net in policy.networks):
        return True
    name = host.lower().removesuffix(".")
    return name in policy.hosts or (name, port) in policy.host_ports or (str(ip), port) in policy.host_ports


def _refuse_unless_allowed(ip: IPAddress, port: int, host: str, policy: OutboundPolicy, *, resolved: bool) -> None:
    reason = is_forbidden_address(ip)
    if reason is not None and not address_allowed(ip, port, host, policy):
        verb = "resolves to" if resolved else "is"
        hint = "" if reason == "metadata" else "; add it to the outbound allowlist if it is meant to be reached"
        raise ForbiddenTarget(f"host {host} {verb} a {reason} address, which outbound calls may not reach{hint}")


def check_literal(ip: IPAddress, port: int, policy: OutboundPolicy) -> None:
    """Refuse an IP-literal host the policy does not allow (what ``resolve_and_check`` does for one, without DNS).

    Raises:
        ForbiddenTarget: ``ip`` is not public and the allowlist does not admit it.
    """
    _refuse_unless_allowed(ip, port, str(ip), policy, resolved=False)


@dataclass(frozen=True)
class ParsedTarget:
    """A URL that passed the static check: its scheme, normalised host (no brackets) and port."""

    scheme: str
    host: str
    port: int


def check_url(url: str, policy: OutboundPolicy) -> ParsedTarget:
    """Check a URL without DNS: http(s) only, no credentials, a valid host and port, no refused IP or localhost.

    Raises:
        ForbiddenTarget: the URL is refused (the message names its host, never its credentials or query).
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ForbiddenTarget("the outbound URL is not a valid http(s) URL with a dotted or named host") from None
    host = parsed.raw_host.decode("ascii", "replace")
    if parsed.scheme not in _DEFAULT_PORTS:
        raise ForbiddenTarget(f"outbound URL scheme {parsed.scheme[:16]!r} is refused; use http or https")
    if parsed.userinfo:
        raise ForbiddenTarget(
            f"outbound URL for host {host[:100]!r} carries credentials (user:password@); send them in a header instead"
        )
    if not host:
        raise ForbiddenTarget("the outbound URL has no host")
    port = _DEFAULT_PORTS[parsed.scheme] if parsed.port is None else parsed.port
    if not 1 <= port <= 65535:
        raise ForbiddenTarget(f"outbound URL for host {host[:100]!r} has port {port}, outside 1-65535")
    kind = _host_kind(host)
    if kind is None:
        raise _bad_host(host)
    if not isinstance(kind, str):
        _refuse_unless_allowed(kind, port, host, policy, resolved=False)
    elif _is_localhost(kind):
        _refuse_unless_allowed(_LOCALHOST, port, kind, policy, resolved=True)
    return ParsedTarget(parsed.scheme, str(kind), port)


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the running loop's getaddrinfo (TCP; IPv4 and IPv6).

    Raises:
        OSError: the name does not resolve.
    """
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve_and_check(
    host: str, port: int, policy: OutboundPolicy, resolver: Resolver | None = None
) -> list[IPAddress]:
    """Resolve ``host`` (IP literals skip DNS) and return its addresses if every one of them may be reached.

    Raises:
        ForbiddenTarget: the host is malformed or any address it resolves to is refused (refused, never filtered).
        UpstreamError: the name does not resolve.
    """
    kind = _host_kind(host)
    if kind is None:
        raise _bad_host(host)
    if not isinstance(kind, str):
        _refuse_unless_allowed(kind, port, host, policy, resolved=False)
        return [kind]
    if _is_localhost(kind):
        _refuse_unless_allowed(_LOCALHOST, port, kind, policy, resolved=True)
        return [_LOCALHOST]
    try:
        answers = await (resolver or system_resolver)(host, port)
    except OSError as exc:
        raise UpstreamError(f"cannot resolve host {kind}: {exc.strerror or exc}") from None
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            ip = ipaddress.ip_address(answer)
        except ValueError:
            raise ForbiddenTarget(f"host {kind} resolved to something that is not an IP address") from None
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise UpstreamError(f"host {kind} resolved to no addresses")
    for ip in addresses:
        _refuse_unless_allowed(ip, port, kind, policy, resolved=True)
    return addresses
