"""A closed-loop load generator: N clients, each sending its next request as soon as the last one answers."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx2 as httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class PhaseResult:
    """One concurrency level's measurements."""

    concurrency: int
    requests: int
    errors: int
    duration_s: float
    requests_per_s: float
    inputs_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_batch_size: float | None = None
    batch_size_counts: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    rank = math.ceil(q / 100 * len(sorted_values))  # 1-based
    return sorted_values[max(0, min(len(sorted_values), rank) - 1)]


async def scrape_batch_sizes(client: httpx.AsyncClient, model: str) -> dict[str, float]:
    """Cumulative batch-size histogram buckets (``le`` → count), plus ``_sum`` and ``_count``."""
    try:
        response = await client.get("/metrics")
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name != "chunkserve_batch_size":
            continue
        for sample in family.samples:
            if sample.labels.get("model") != model:
                continue
            if sample.name.endswith("_bucket"):
                out[sample.labels["le"]] = sample.value
            elif sample.name.endswith("_sum"):
                out["_sum"] = sample.value
            elif sample.name.endswith("_count"):
                out["_count"] = sample.value
    return out


def _histogram_delta(before: Mapping[str, float], after: Mapping[str, float]) -> tuple[float | None, dict[str, int]]:
    count = after.get("_count", 0) - before.get("_count", 0)
    if count <= 0:
        return None, {}
    mean = (after.get("_sum", 0) - before.get("_sum", 0)) / count
    buckets: dict[str, int] = {}
    previous = 0.0
    bounds = sorted((k for k in after if not k.startswith("_")), key=lambda k: float(k))
    for bound in bounds:
        cumulative = after[bound] - before.get(bound, 0)
        if cumulative - previous > 0:
            buckets[f"<={bound}"] = int(cumulative - previous)
        previous = cumulative
    return mean, buckets


async def closed_loop(
    url: str,
    model: str,
    texts: list[str],
    concurrency: int,
    *,
    requests: int | None = None,
    duration_s: float | None = None,
    timeout_s: float = 60.0,
    headers: dict[str, str] | None = None,
) -> PhaseResult:
    """Drive ``/v1/embeddings`` with ``concurrency`` closed-loop clients, one input per request."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, timeout=timeout_s, limits=limits, trust_env=False, headers=headers
    ) as client:
        # Warm the connections (and the server's code paths) outside the measured window.
        await asyncio.gather(
            *(client.post("/v1/embeddings", json={"input": t, "model": model}) for t in texts[:concurrency])
        )
        before = await scrape_batch_sizes(client, model)
        latencies: list[float] = []
        errors: list[str] = []
        counter = iter(range(10**12))
        deadline = time.perf_counter() + duration_s if duration_s else None
        total = requests if requests is not None else None

        async def worker() -> None:
            while True:
                i = next(counter)
                if (total is not None and i >= total) or (deadline is not None and time.perf_counter() >= deadline):
                    return
                text = texts[i % len(texts)]
                start = time.perf_counter()
                try:
                    response = await client.post("/v1/embeddings", json={"input": text, "model": model})
                    ok = response.status_code == 200
                    if not ok:
                        errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                except httpx.HTTPError as exc:
                    ok = False
                    errors.append(f"{type(exc).__name__}: {exc}")
                if ok:
                    latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        after = await scrape_batch_sizes(client, model)
    latencies.sort()
    mean_batch, buckets = _histogram_delta(before, after)
    done = len(latencies)
    return PhaseResult(
        concurrency=concurrency,
        requests=done,
        errors=len(errors),
        duration_s=round(elapsed, 3),
        requests_per_s=round(done / elapsed, 2),
        inputs_per_s=round(done / elapsed, 2),
        p50_ms=round(percentile(latencies, 50) * 1000, 2),
        p90_ms=round(percentile(latencies, 90) * 1000, 2),
        p99_ms=round(percentile(latencies, 99) * 1000, 2),
        mean_batch_size=round(mean_batch, 2) if mean_batch is not None else None,
        batch_size_counts=buckets,
        error_samples=errors[:5],
    )
