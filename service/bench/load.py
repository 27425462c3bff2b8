"""Load shapes: closed loop (N clients, each sending when its last answer came) and open loop (Poisson arrivals).

Both are bounded by a request count and/or a duration; requests still in flight when the duration ends are
cancelled and counted as ``cut`` (never as samples), so a run stops on time. The caller sends the warm-up requests
(numbered below ``first``) first, outside the measured window.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2 as httpx

from service.bench.scenario import Sample, Send


@dataclass(frozen=True)
class Bounds:
    """When a phase stops: after ``requests`` requests, after ``duration_s`` seconds, whichever comes first."""

    requests: int | None = None
    duration_s: float | None = None
    warmup: int | None = None  # unmeasured requests first; None: as many as the phase's clients (at least 4)

    def warmup_for(self, clients: int) -> int:
        """Warm-up requests for a phase of ``clients`` concurrent clients."""
        return self.warmup if self.warmup is not None else max(4, clients)

    def __post_init__(self) -> None:
        if self.requests is None and self.duration_s is None:
            raise ValueError("a phase needs a request count or a duration")


@dataclass
class PhaseRun:
    """What one phase produced: the samples, its wall time, and (open loop) when each request was due."""

    shape: str  # "closed" or "open"
    level: float  # concurrency, or arrival rate per second
    samples: list[Sample]
    elapsed_s: float
    cut: int = 0  # requests cancelled when the duration ended
    offsets_s: list[float] = field(default_factory=list)  # open loop: each request's due time from the start


Tick = Callable[[], None]


def new_client(url: str, connections: int, timeout_s: float, headers: dict[str, str] | None) -> httpx.AsyncClient:
    """One pooled client for a phase (no proxies from the environment: loopback benchmarks)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits, trust_env=False, headers=headers)


async def warm_up(client: httpx.AsyncClient, send: Send, count: int, concurrency: int) -> None:
    """``count`` requests, ``concurrency`` at a time, outside the measured window (connections, code paths)."""
    numbers = iter(range(count))

    async def worker() -> None:
        for i in numbers:
            await send(client, i)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))


async def _settle(tasks: list[asyncio.Task[None]], timeout_s: float | None) -> int:
    """Wait for a phase's ``tasks`` at most ``timeout_s`` seconds, then cancel the rest and wait until they have
    ended (so nothing outlives the phase); returns how many were cut."""
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return len(pending)


async def closed_loop(
    client: httpx.AsyncClient, send: Send, concurrency: int, bounds: Bounds, tick: Tick, first: int = 0
) -> PhaseRun:
    """``concurrency`` clients, each sending its next request as soon as the last one answered (after the warm-up)."""
    samples: list[Sample] = []
    counter = itertools.count(first)
    last = first + bounds.requests if bounds.requests is not None else None

    async def worker() -> None:
        for i in counter:
            if last is not None and i >= last:
                return
            samples.append(await send(client, i))
            tick()

    began = time.perf_counter()
    cut = await _settle([asyncio.create_task(worker()) for _ in range(concurrency)], bounds.duration_s)
    return PhaseRun("closed", concurrency, samples, time.perf_counter() - began, cut=cut)


def poisson_offsets(rate: float, count: int, seed: int) -> list[float]:
    """``count`` arrival times (seconds from the start) of a Poisson process of ``rate`` per second.

    Raises:
        ValueError: ``rate`` is not positive.
    """
    if rate <= 0:
        raise ValueError(f"arrival rate {rate} must be positive")
    rng = random.Random(seed)
    return list(itertools.accumulate(rng.expovariate(rate) for _ in range(count)))


async def open_loop(
    client: httpx.AsyncClient, send: Send, rate: float, bounds: Bounds, tick: Tick, seed: int = 0, first: int = 0
) -> PhaseRun:
    """Requests sent at Poisson arrival times whatever the answers; latency counts from when each was due.

    Measuring from the due time (not the actual send) keeps a slow server from hiding its queue (coordinated
    omission). With only a duration bound, arrivals are drawn until the duration is used up.
    """
    count = bounds.requests if bounds.requests is not None else int(rate * (bounds.duration_s or 0) * 2) + 16
    offsets = poisson_offsets(rate, count, seed)
    if bounds.duration_s is not None:
        offsets = [t for t in offsets if t < bounds.duration_s]
    samples: list[Sample] = []

    async def one(i: int, due: float) -> None:
        sample = await send(client, first + i)
        sample.latency_s += max(0.0, started[i] - due)
        samples.append(sample)
        tick()

    began = time.perf_counter()
    started: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    for i, offset in enumerate(offsets):
        delay = began + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        started.append(time.perf_counter())
        tasks.append(asyncio.create_task(one(i, began + offset)))
    remaining = None if bounds.duration_s is None else max(0.0, began + bounds.duration_s - time.perf_counter())
    cut = await _settle(tasks, remaining)
    return PhaseRun("open", rate, samples, time.perf_counter() - began, cut=cut, offsets_s=offsets)


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    rank = -(-q * len(sorted_values) // 100)  # ceil, 1-based
    return sorted_values[max(0, min(len(sorted_values), int(rank)) - 1)]
