"""Per-caller quotas: a request-rate token bucket and a running-jobs count. Pure: asyncio-free, no framework.

Both are keyed by ``Principal.key`` and raise ``RateLimited`` (with ``retry_after_s``) when a caller is over.
They are used from one event loop only, so they hold no locks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from service.errors import RateLimited


class TokenBuckets:
    """``rate_per_s`` requests per second per key, with bursts up to ``burst``; a rate of 0 turns it off.

    At most ``max_keys`` buckets are kept; the least recently used is dropped first (it comes back full).
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate_per_s < 0 or burst < 1:
            raise ValueError(f"rate_per_s must be >= 0 and burst >= 1, got {rate_per_s} and {burst}")
        self.rate_per_s, self.burst, self.max_keys = rate_per_s, burst, max_keys
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, when counted); oldest use first

    def take(self, key: str) -> None:
        """Spend one token of ``key``'s bucket.

        Raises:
            RateLimited: the bucket is empty; ``retry_after_s`` is when the next token arrives.
        """
        if self.rate_per_s == 0:
            return
        now = self._clock()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate_per_s
            raise RateLimited(
                f"rate limit exceeded ({self.rate_per_s:g} requests/s, bursts of {self.burst}); retry in {wait:.2f} s",
                retry_after_s=wait,
            )
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]


class JobSlots:
    """At most ``limit`` jobs running at once per key; 0 means no limit."""

    def __init__(self, limit: int, *, retry_after_s: float = 1.0) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.limit, self.retry_after_s = limit, retry_after_s
        self._running: dict[str, int] = {}
        self.total = 0  # jobs running now, all callers together

    def running(self, key: str) -> int:
        """How many jobs ``key`` runs now."""
        return self._running.get(key, 0)

    def acquire(self, key: str) -> None:
        """Count one more job for ``key``; pair with ``release``.

        Raises:
            RateLimited: ``key`` already runs ``limit`` jobs.
        """
        count = self._running.get(key, 0)
        if self.limit and count >= self.limit:
            raise RateLimited(
                f"{count} jobs already running for this caller, the most allowed at once; retry when one finishes",
                retry_after_s=self.retry_after_s,
            )
        self._running[key] = count + 1
        self.total += 1

    def release(self, key: str) -> None:
        """One job of ``key`` ended."""
        count = self._running.get(key, 0) - 1
        if count >= 0:
            self.total -= 1
        if count > 0:
            self._running[key] = count
        else:
            self._running.pop(key, None)

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """A slot for the duration of the block.

        Raises:
            RateLimited: see ``acquire``.
        """
        self.acquire(key)
        try:
            yield
        finally:
            self.release(key)
