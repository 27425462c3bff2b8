"""A small JSON view of the Prometheus collectors, for the dashboard: what a person wants to see each second.

It reads the same collectors ``/metrics`` renders (one source of truth), so the page and a Prometheus scrape
never disagree. Quantiles are estimated from histogram buckets the way Prometheus's ``histogram_quantile``
does (linear inside the bucket), so they are as coarse as the buckets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

_PREFIX = "chunkserve_"


@dataclass
class _Histogram:
    """Cumulative bucket counts by upper bound, plus the count and the sum."""

    buckets: dict[float, float] = field(default_factory=dict)
    count: float = 0.0
    total: float = 0.0

    def add(self, suffix: str, labels: dict[str, str], value: float) -> None:
        if suffix == "_bucket":
            bound = float(labels["le"])
            self.buckets[bound] = self.buckets.get(bound, 0.0) + value
        elif suffix == "_count":
            self.count += value
        elif suffix == "_sum":
            self.total += value

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1), or None without observations."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for bound in sorted(self.buckets):
            cumulative = self.buckets[bound]
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower  # beyond the last finite bucket: its bound is the best estimate
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = bound, cumulative
        return lower

    def counts(self) -> dict[str, int]:
        """Observations per bucket (not cumulative), keyed by the bucket's upper bound as text."""
        out: dict[str, int] = {}
        below = 0.0
        for bound in sorted(self.buckets):
            cumulative = self.buckets[bound]
            out["+Inf" if math.isinf(bound) else f"{bound:g}"] = round(cumulative - below)
            below = cumulative
        return out


def _samples(registry: CollectorRegistry) -> Iterable[tuple[str, dict[str, str], float]]:
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.startswith(_PREFIX):
                yield sample.name.removeprefix(_PREFIX), dict(sample.labels), float(sample.value)


def _split(name: str, histograms: tuple[str, ...]) -> tuple[str, str] | None:
    for base in histograms:
        for suffix in ("_bucket", "_count", "_sum"):
            if name == base + suffix:
                return base, suffix
    return None


def snapshot(registry: CollectorRegistry, *, jobs_in_flight: int) -> dict[str, Any]:
    """Queues and batches per model, latency per route, remote outcomes per host, and what runs now."""
    models: dict[str, dict[str, Any]] = defaultdict(dict)
    hist: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
    routes: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
    remote: dict[str, dict[str, int]] = defaultdict(dict)
    in_flight = 0.0
    names = ("batch_size", "batch_fill_ratio", "request_duration_seconds")
    for name, labels, value in _samples(registry):
        split = _split(name, names)
        if split is not None:
            base, suffix = split
            if base == "request_duration_seconds":
                routes[(labels["method"], labels["route"])].add(suffix, labels, value)
            else:
                hist[(base, labels["model"])].add(suffix, labels, value)
        elif name == "queue_depth":
            models[labels["model"]]["queue_depth"] = int(value)
        elif name in ("padding_tokens_total", "input_tokens_total", "dropped_inputs_total", "failed_inputs_total"):
            models[labels["model"]][name.removesuffix("_total")] = int(value)
        elif name == "remote_calls_total":
            remote[labels["host"]][labels["outcome"]] = int(value)
        elif name == "requests_in_flight":
            in_flight = value
    for (base, model), h in hist.items():
        entry = models[model]
        if base == "batch_size":
            entry["batches"] = round(h.count)
            entry["inputs"] = round(h.total)
            entry["mean_batch"] = round(h.total / h.count, 2) if h.count else None
            entry["batch_sizes"] = {k: v for k, v in h.counts().items() if v}
        else:
            entry["fill_ratio"] = round(h.total / h.count, 3) if h.count else None
    for entry in models.values():
        padding, real = entry.get("padding_tokens", 0), entry.get("input_tokens", 0)
        entry["padding_share"] = round(padding / (padding + real), 3) if padding + real else None
    return {
        "models": dict(sorted(models.items())),
        "routes": [
            {
                "method": method,
                "route": route,
                "count": round(h.count),
                "p50_ms": _ms(h.quantile(0.5)),
                "p99_ms": _ms(h.quantile(0.99)),
            }
            for (method, route), h in sorted(routes.items(), key=lambda item: (item[0][1], item[0][0]))
        ],
        "remote": {host: dict(sorted(outcomes.items())) for host, outcomes in sorted(remote.items())},
        "requests_in_flight": int(in_flight),
        "jobs_in_flight": jobs_in_flight,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
