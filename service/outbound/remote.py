"""RemoteClient: one chunk to one remote AI API, with per-host limits, retries, Retry-After and a size cap.

The HTTP client is shared and owned by whoever built it (the lifespan): never one per request.
Upstream error bodies are never passed on; callers see the host, the status and what was tried.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import orjson

from service.errors import DeadlineExceeded, UpstreamError
from service.outbound.aio import GuardedSession, aiohttp_exchange
from service.outbound.exchange import Final, Retryable, httpx_exchange
from service.outbound.protocols import MalformedAnswer, RemoteProtocol, parse_answer, request_body

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_DROP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "cookie"})


@functools.lru_cache(maxsize=1024)
def _host_of(url: str) -> str:
    # Parsing a URL costs tens of microseconds; a job asks for the same few hosts thousands of times.
    return httpx.URL(url).host


@dataclass(frozen=True, slots=True)
class RemoteTarget:
    """A remote endpoint as a request names it."""

    url: str
    protocol: RemoteProtocol = RemoteProtocol.GENERIC
    model: str | None = None
    prompt: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    name: str | None = None  # the label in results, when the request gives one (see jobs.targets.target_label)

    @property
    def host(self) -> str:
        return _host_of(self.url)

    def endpoint(self) -> str:
        """The URL actually posted to (OpenAI base URLs get their resource path)."""
        return _endpoint(self.url, self.protocol)


_SUFFIXES = {RemoteProtocol.OPENAI_EMBEDDINGS: "/embeddings", RemoteProtocol.OPENAI_CHAT: "/chat/completions"}


@functools.lru_cache(maxsize=1024)  # asked once per chunk, for the same few targets
def _endpoint(url: str, protocol: RemoteProtocol) -> str:
    suffix = _SUFFIXES.get(protocol)
    if suffix is None or url.rstrip("/").endswith(suffix):
        return url
    return url.rstrip("/") + suffix


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries on connect errors, 429 and 5xx, with jittered exponential backoff."""

    attempts: int = 3
    backoff_base_s: float = 0.05
    backoff_max_s: float = 2.0
    max_retry_after_s: float = 10.0


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """What one chunk's remote call gave back."""

    value: Any
    attempts: int
    size: int = 0  # bytes of the answer as read


@dataclass
class RemoteStats:
    """Counters by (host, final outcome), for metrics and tests."""

    calls: int = 0
    retries: int = 0
    cancelled: int = 0
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    max_hosts: int = 100
    _hosts: set[str] = field(default_factory=set)

    def count(self, host: str, outcome: str) -> None:
        # Callers choose the URLs: past max_hosts distinct hosts, the rest share one label (bounded series).
        if host not in self._hosts:
            if len(self._hosts) >= self.max_hosts:
                host = "other"
            else:
                self._hosts.add(host)
        key = (host, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


class UpstreamCallError(UpstreamError):
    """A remote call failed after ``attempts`` tries."""

    def __init__(self, message: str, *, attempts: int, kind: str) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.kind = kind


class RemoteClient:
    """Calls remote AI APIs through one shared, pooled client: the server's ``GuardedSession`` (aiohttp), or an
    ``httpx.AsyncClient`` (tests, tools)."""

    def __init__(
        self,
        client: GuardedSession | httpx.AsyncClient,
        *,
        per_host_limit: int = 64,
        retry: RetryPolicy | None = None,
        max_response_bytes: int = 4 * 1024 * 1024,
        api_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.per_host_limit = per_host_limit
        self.retry = retry or RetryPolicy()
        self.max_response_bytes = max_response_bytes
        self._api_keys = {k.lower(): v for k, v in (api_keys or {}).items()}
        self._limits: dict[str, _HostSlot] = {}
        self.stats = RemoteStats()

    @property
    def hosts_tracked(self) -> int:
        """Hosts that have a concurrency limiter now (only those with calls in flight or waiting)."""
        return len(self._limits)

    def _slot(self, host: str) -> _HostSlot:
        # Callers choose the hosts: a limiter lives only while some call uses it, so the table stays bounded.
        slot = self._limits.get(host)
        if slot is None:
            slot = self._limits[host] = _HostSlot(asyncio.Semaphore(self.per_host_limit))
        slot.users += 1
        return slot

    def _release(self, host: str, slot: _HostSlot) -> None:
        slot.users -= 1
        if slot.users == 0 and self._limits.get(host) is slot:
            del self._limits[host]

    async def call(
        self,
        target: RemoteTarget,
        text: str,
        *,
        timeout_s: float,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> RemoteResult:
        """Send ``text`` to ``target`` and parse the answer by its protocol.

        ``deadline`` is a ``time.monotonic()`` instant after which no further try starts; ``max_bytes`` lowers
        the answer-size cap for this call (a job's remaining result budget).

        Raises:
            UpstreamCallError: every try failed (connect error, bad status, malformed or oversized answer).
            DeadlineExceeded: the overall deadline passed.
            ForbiddenTarget: the outbound policy refused the address at connect time.
        """
        self.stats.calls += 1
        cap = self.max_response_bytes if max_bytes is None else max(0, min(max_bytes, self.max_response_bytes))
        attempt = 0
        while True:
            attempt += 1
            # Inline rather than an async context manager: this runs once per chunk of every job.
            host = target.host
            slot = self._slot(host)
            try:
                try:
                    async with slot.semaphore:
                        value, size = await self._once(target, text, self._timeout(timeout_s, deadline), cap)
                finally:
                    self._release(host, slot)
                self.stats.count(host, "ok")
                return RemoteResult(value=value, attempts=attempt, size=size)
            except asyncio.CancelledError:
                self.stats.cancelled += 1
                self.stats.count(target.host, "cancelled")
                raise
            except Retryable as exc:
                delay = self._delay(attempt, exc.retry_after_s)
                out_of_time = deadline is not None and time.monotonic() + delay >= deadline
                if attempt >= self.retry.attempts or out_of_time:
                    self.stats.count(target.host, exc.kind)
                    raise UpstreamCallError(
                        f"{target.host}: {exc.reason} (after {attempt} attempt{'s' if attempt > 1 else ''})",
                        attempts=attempt,
                        kind=exc.kind,
                    ) from None
                self.stats.retries += 1
                await asyncio.sleep(delay)
            except Final as exc:
                self.stats.count(target.host, exc.kind)
                raise UpstreamCallError(f"{target.host}: {exc.reason}", attempts=attempt, kind=exc.kind) from None

    def _timeout(self, timeout_s: float, deadline: float | None) -> float:
        if deadline is None:
            return timeout_s
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the request's deadline passed before this chunk could be sent")
        return min(timeout_s, left)

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.retry.max_retry_after_s)
        ceiling = min(self.retry.backoff_max_s, self.retry.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _headers(self, target: RemoteTarget) -> dict[str, str]:
        headers = {k: v for k, v in target.headers if k.lower() not in _DROP_HEADERS}
        key = self._api_keys.get(target.host.lower())
        if key and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {key}"
        # The body is JSON; a target's own Content-Type (its headers may set one) is sent instead, never both.
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        return headers

    async def _once(self, target: RemoteTarget, text: str, timeout_s: float, cap: int) -> tuple[Any, int]:
        body = orjson.dumps(request_body(target.protocol, target.model, target.prompt, text))
        headers = self._headers(target)
        if isinstance(self.client, GuardedSession):
            answer = await aiohttp_exchange(self.client, target.endpoint(), body, headers, timeout_s, cap)
        else:
            answer = await httpx_exchange(self.client, target.endpoint(), body, headers, timeout_s, cap)
        if answer.status in _RETRY_STATUSES:
            raise Retryable("status", f"HTTP {answer.status}", _retry_after(answer.retry_after))
        if answer.status >= 300:
            raise Final("status", f"HTTP {answer.status}")
        try:
            payload = json.loads(answer.body)
        except ValueError:
            raise Final("malformed", "the answer is not valid JSON") from None
        try:
            return parse_answer(target.protocol, payload), len(answer.body)
        except MalformedAnswer as exc:
            raise Final("malformed", str(exc)) from None


@dataclass(slots=True)
class _HostSlot:
    semaphore: asyncio.Semaphore
    users: int = 0


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
