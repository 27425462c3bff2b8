"""The server's outbound HTTP client: one aiohttp session whose every connection goes to an address the guard allowed.

Why aiohttp: per remote call it spends less than half the CPU of httpx2 on our own asyncio backend, and about two
thirds of httpx2 on the httpx-aiohttp transport (the README's "Fan-out" section has the measurement); on a wide fan-out
that CPU is what limits the server. The SSRF guard sits where aiohttp learns the address it connects to:

* names: ``GuardedResolver`` is the session's resolver; it resolves through ``resolve_and_check`` and hands aiohttp
  only checked addresses, so DNS rebinding between the check and the connection has nothing to exploit. The DNS
  cache is off, so every new connection is checked again (as the httpx path does);
* IP literals: aiohttp does not ask the resolver for them, so ``aiohttp_exchange`` checks the host as aiohttp's own
  URL parser (yarl) reads it, before sending; no parser differential between check and use.

No proxies from the environment, no redirects followed, no cookies kept between calls.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl

import aiohttp
import httpx2 as httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from service.errors import ForbiddenTarget, UpstreamError
from service.outbound.exchange import Answer, Final, Retryable, over_cap, too_large
from service.outbound.guard import OutboundPolicy, Resolver, check_literal, resolve_and_check

_READ_SIZE = 64 * 1024


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that answers only addresses the outbound policy allows (and refuses the rest)."""

    def __init__(self, policy: OutboundPolicy, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve and check ``host``.

        Raises:
            ForbiddenTarget: the policy refuses the host or one of its addresses.
            OSError: the name does not resolve (aiohttp reports it as a connection error).
        """
        try:
            addresses = await resolve_and_check(host, port, self.policy, self.resolver)
        except ForbiddenTarget:
            raise
        except UpstreamError as exc:
            raise OSError(exc.message) from None
        return [
            {
                "hostname": host,
                "host": str(ip),
                "port": port,
                "family": socket.AF_INET if ip.version == 4 else socket.AF_INET6,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for ip in addresses
        ]

    async def close(self) -> None:
        """Nothing to release."""


class GuardedSession:
    """An ``aiohttp.ClientSession`` built for outbound calls, with the policy its exchanges check IP literals by."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
        keepalive_s: float = 5.0,
    ) -> None:
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        # limit=0: the per-host semaphores of RemoteClient are the limit; a second one here would only queue calls.
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=0,
            resolver=GuardedResolver(policy, resolver),
            use_dns_cache=False,
            ssl=context,
            keepalive_timeout=keepalive_s,
        )
        self.policy = policy
        self.session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            raise_for_status=False,
        )

    async def aclose(self) -> None:
        """Close the session and its connections."""
        await self.session.close()


@functools.lru_cache(maxsize=1024)
def _checked_url(url: str, policy: OutboundPolicy) -> URL:
    """``url`` as aiohttp will read it, after the checks aiohttp's resolver cannot make (scheme, IP literal host).

    Raises:
        ForbiddenTarget: not http(s), no host, or an IP literal the policy refuses.
    """
    parsed = URL(url)
    host = parsed.host
    if parsed.scheme not in ("http", "https") or not host or parsed.port is None:
        raise ForbiddenTarget("the outbound URL is not a valid http(s) URL with a host")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return parsed  # a name: GuardedResolver checks what it resolves to
    check_literal(ip, parsed.port, policy)
    return parsed


async def aiohttp_exchange(
    guarded: GuardedSession, url: str, body: bytes, headers: dict[str, str], timeout_s: float, cap: int
) -> Answer:
    """POST ``body`` with ``headers`` (Content-Type included) to ``url``; read at most ``cap`` bytes of the answer.

    Raises:
        Retryable: the connection failed or broke mid-answer.
        Final: timeout, an answer over the cap or not matching its encoding, or a request that cannot be sent.
        ForbiddenTarget: the policy refused the URL or an address its host resolves to.
    """
    try:
        target = _checked_url(url, guarded.policy)
    except ValueError as exc:  # yarl refuses the URL
        raise Final("connect", f"the request could not be sent ({type(exc).__name__})") from None
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    sent = False
    try:
        async with guarded.session.post(
            target,
            data=body,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            sent = True
            refusal = too_large(response.headers.get("Content-Length"), cap)
            if refusal is not None:
                raise refusal
            chunks: list[bytes] = []
            size = 0
            while chunk := await response.content.read(_READ_SIZE):
                size += len(chunk)
                if size > cap:
                    raise over_cap(cap)
                chunks.append(chunk)
            return Answer(response.status, response.headers.get("Retry-After"), b"".join(chunks))
    except (ForbiddenTarget, Final):
        raise
    except TimeoutError:
        what = "answer not complete" if sent else "no answer"
        raise Final("timeout", f"{what} within {timeout_s:.3g} s") from None
    except aiohttp.ClientPayloadError as exc:
        if "encoding" in str(exc).lower():
            raise Final("malformed", "the answer does not match its Content-Encoding") from None
        raise Retryable("connect", f"connection broke mid-answer ({type(exc).__name__})") from None
    except (aiohttp.ClientConnectionError, aiohttp.ClientResponseError, OSError) as exc:
        # Connect, write to a connection the peer closed, read, protocol: a pooled connection may have gone stale,
        # so it is worth another try on a fresh one.
        what = "connection broke mid-answer" if sent else "connection failed"
        raise Retryable("connect", f"{what} ({type(exc).__name__})") from None
    except (aiohttp.ClientError, ValueError) as exc:
        # Anything else the client refuses (a URL or header it cannot send): no retry can fix it.
        raise Final("connect", f"the request could not be sent ({type(exc).__name__})") from None
