"""The httpx2 client of the pools benchmark: connections only to addresses the guard allows, spread over several
small pools (the server's own outbound client is aiohttp's, ``service/outbound/aio.py``).

httpx's connection pool does work linear in its size on every request start and finish, so one pool carrying a
thousand concurrent calls spends seconds of CPU on bookkeeping. ``ShardedTransport`` keeps each pool small.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Iterable

import httpcore2 as httpcore
import httpx2 as httpx

from service.bench.stacks.aionet import AsyncioBackend
from service.errors import ForbiddenTarget, UpstreamError
from service.outbound.guard import OutboundPolicy, Resolver, resolve_and_check


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to checked addresses, and to nothing else."""

    def __init__(
        self,
        policy: OutboundPolicy,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = inner if inner is not None else AsyncioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve and check ``host``, then connect to its checked addresses in order until one answers.

        Raises:
            ForbiddenTarget: the policy refuses the host or one of its addresses.
            httpcore.ConnectError: the name does not resolve or no address accepts the connection.
            httpcore.ConnectTimeout: resolving and connecting took longer than ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                addresses = await resolve_and_check(host, port, self.policy, self.resolver)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except UpstreamError as exc:
            raise httpcore.ConnectError(exc.message) from None
        failure: httpcore.ConnectError | httpcore.ConnectTimeout = httpcore.ConnectError(
            f"no address of {host} accepted the connection"
        )
        for i, ip in enumerate(addresses):
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout(f"connecting to {host} timed out")
            # Each address left gets an equal share of the time left, so one that drops packets (typically an
            # unrouted IPv6 address) cannot use up the whole timeout before the next one is tried.
            share = None if remaining is None else remaining / (len(addresses) - i)
            try:
                return await self.inner.connect_tcp(
                    str(ip), port, timeout=share, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refuse: outbound calls go over TCP only.

        Raises:
            ForbiddenTarget: always.
        """
        raise ForbiddenTarget("outbound calls may not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        """Sleep as the wrapped backend does (httpcore's retry back-off)."""
        await self.inner.sleep(seconds)


def make_guarded_transport(
    policy: OutboundPolicy,
    *,
    resolver: Resolver | None = None,
    limits: httpx.Limits | None = None,
    retries: int = 0,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport (HTTP/1.1, no proxy) whose pool connects through ``GuardedBackend``; see make_guarded_client.

    Raises:
        RuntimeError: this httpx no longer keeps its httpcore pool in ``_pool``, so the guard cannot be installed.
    """
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, retries=retries, trust_env=False)
    # httpx takes no network backend, so its pool is swapped for one built with the same settings plus the guard.
    if type(getattr(transport, "_pool", None)) is not httpcore.AsyncConnectionPool:
        raise RuntimeError("httpx.AsyncHTTPTransport keeps no httpcore pool in _pool; cannot install the SSRF guard")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        retries=retries,
        network_backend=GuardedBackend(policy, resolver),
    )
    return transport


class ShardedTransport(httpx.AsyncBaseTransport):
    """Hands requests to several transports in turn, so that no single pool grows large."""

    def __init__(self, shards: Iterable[httpx.AsyncBaseTransport]) -> None:
        self.shards = list(shards)
        if not self.shards:
            raise ValueError("ShardedTransport needs at least one transport")
        self._next = itertools.cycle(self.shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on the next shard."""
        return await next(self._next).handle_async_request(request)

    async def aclose(self) -> None:
        """Close every shard."""
        await asyncio.gather(*(shard.aclose() for shard in self.shards))


# Past a few dozen connections a pool's per-request bookkeeping outweighs the request itself.
POOL_SHARD_SIZE = 8
MAX_POOL_SHARDS = 128


def make_guarded_client(
    policy: OutboundPolicy,
    *,
    timeout: float | httpx.Timeout,
    limits: httpx.Limits | None = None,
    resolver: Resolver | None = None,
    retries: int = 0,
    verify: ssl.SSLContext | bool = True,
    concurrency: int = POOL_SHARD_SIZE,
) -> httpx.AsyncClient:
    """The outbound client: guarded transports, ``follow_redirects=False``, ``trust_env=False`` (no env proxies).

    ``concurrency`` is how many calls are expected at once; the connections are spread over
    ``concurrency / POOL_SHARD_SIZE`` pools (at most ``MAX_POOL_SHARDS``), each with its share of ``limits``.
    """
    shards = max(1, min(MAX_POOL_SHARDS, -(-concurrency // POOL_SHARD_SIZE)))
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    share = httpx.Limits(
        max_connections=None if limits.max_connections is None else max(1, -(-limits.max_connections // shards)),
        max_keepalive_connections=(
            None if limits.max_keepalive_connections is None else max(1, -(-limits.max_keepalive_connections // shards))
        ),
        keepalive_expiry=limits.keepalive_expiry,
    )
    # One context for every shard: loading the CA bundle costs ~20 ms each time.
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify, trust_env=False)
    # Env proxies would route around the guard; a redirect hop is checked again at connect time, but is not followed.
    transports = [
        make_guarded_transport(policy, resolver=resolver, limits=share, retries=retries, verify=context)
        for _ in range(shards)
    ]
    transport: httpx.AsyncBaseTransport = transports[0] if shards == 1 else ShardedTransport(transports)
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)
