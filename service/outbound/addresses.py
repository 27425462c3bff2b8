"""Which IP addresses point inward: loopback, private, link-local, CGNAT, metadata, multicast and reserved.

Pure classification of one address, with no URLs, host names, DNS or allowlist: ``service/outbound/guard.py`` builds the
outbound URL policy on top of it, so the address table can be read (and tested) on its own.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _rules(table: dict[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(net), reason) for reason, nets in table.items() for net in nets.split())


# Checked in order, so single metadata addresses come before the ranges that hold them. Metadata: AWS, GCP, Azure,
# OCI, DigitalOcean (169.254.169.254), AWS ECS (169.254.170.2), Alibaba (100.100.100.200), Azure WireServer
# (168.63.129.16, which looks public), Oracle Classic (192.0.0.192), AWS IMDS over IPv6 (fd00:ec2::254).
_V4_RULES = _rules(
    {
        "metadata": "169.254.169.254/32 169.254.170.2/32 100.100.100.200/32 168.63.129.16/32 192.0.0.192/32",
        "unspecified": "0.0.0.0/8",
        "loopback": "127.0.0.0/8",
        "private": "10.0.0.0/8 172.16.0.0/12 192.168.0.0/16",
        "link-local": "169.254.0.0/16",
        "cgnat": "100.64.0.0/10",
        "documentation": "192.0.2.0/24 198.51.100.0/24 203.0.113.0/24",
        "benchmarking": "198.18.0.0/15",
        "multicast": "224.0.0.0/4",
        "broadcast": "255.255.255.255/32",
        "reserved": "192.0.0.0/24 192.88.99.0/24 240.0.0.0/4",
    }
)
_V6_RULES = _rules(
    {
        "metadata": "fd00:ec2::254/128",
        "unspecified": "::/128",
        "loopback": "::1/128",
        "link-local": "fe80::/10",
        "private": "fc00::/7 fec0::/10",
        "multicast": "ff00::/8",
        "documentation": "2001:db8::/32 3fff::/20",
        "reserved": "100::/64 64:ff9b:1::/48",
    }
)
# IPv6 forms that carry an IPv4 address in their low 32 bits and reach it when used.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def _v4_reason(ip: ipaddress.IPv4Address) -> str | None:
    for net, reason in _V4_RULES:
        if ip in net:
            return reason
    return None if ip.is_global else "reserved"


def _v6_reason(ip: ipaddress.IPv6Address) -> str | None:
    ip = ipaddress.IPv6Address(int(ip))  # drop any %scope
    for net, reason in _V6_RULES:
        if ip in net:
            return reason
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    inner: list[ipaddress.IPv4Address] = []
    usable = False
    if ip.ipv4_mapped or ip in _NAT64:
        inner, usable = [low], True
    elif ip.sixtofour:
        inner, usable = [ip.sixtofour], True
    elif ip in _V4_COMPATIBLE or ip in _V4_TRANSLATED:
        inner, usable = [low], False
    elif ip.teredo:
        inner, usable = list(ip.teredo), False
    for v4 in inner:
        if why := _v4_reason(v4):
            return why
    if inner:
        # Mapped, NAT64 and 6to4 forms of a public IPv4 are as public as it; the deprecated forms are refused.
        return None if usable else "reserved"
    return None if ip in _GLOBAL_UNICAST and ip.is_global else "reserved"


def is_forbidden_address(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be reached ("loopback", "private", "metadata", ...), or None when it is public."""
    return _v4_reason(ip) if isinstance(ip, ipaddress.IPv4Address) else _v6_reason(ip)


def plain_address(ip: IPAddress) -> IPAddress:
    """``ip`` without its IPv6 %scope, and an IPv4-mapped address as the IPv4 address it is."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    ip = ipaddress.IPv6Address(int(ip))
    return ip if ip.ipv4_mapped is None else ip.ipv4_mapped
