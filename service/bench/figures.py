"""Figures of one phase (throughput, latency percentiles, errors by kind) and their summary over repeats."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from service.bench.load import PhaseRun, percentile

# Figures whose spread over repeats the report shows.
SPREAD_KEYS = ("requests_per_s", "inputs_per_s", "tokens_per_s", "p50_ms", "p99_ms")


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q) * 1000, 2) if values else None


def phase_figures(run: PhaseRun) -> dict[str, Any]:
    """Throughput and latency of the successful requests; errors by kind, shed load (503) apart."""
    ok = [s for s in run.samples if s.error is None]
    kinds = Counter(s.error for s in run.samples if s.error is not None)
    shed = kinds.pop("shed", 0)
    latencies = sorted(s.latency_s for s in ok)
    elapsed = max(run.elapsed_s, 1e-9)
    inputs = sum(s.inputs for s in ok)
    tokens = sum(s.tokens for s in ok)
    out: dict[str, Any] = {
        "shape": run.shape,
        "level": run.level,
        "sent": len(run.samples) + run.cut,
        "requests": len(ok),
        "inputs": inputs,
        "tokens": tokens,
        "errors": sum(kinds.values()),
        "errors_by_kind": dict(kinds),
        "shed_503": shed,
        "cut_at_deadline": run.cut,
        "duration_s": round(run.elapsed_s, 3),
        "requests_per_s": round(len(ok) / elapsed, 2),
        "inputs_per_s": round(inputs / elapsed, 2),
        "tokens_per_s": round(tokens / elapsed, 1) if tokens else None,
        "p50_ms": _ms(latencies, 50),
        "p90_ms": _ms(latencies, 90),
        "p99_ms": _ms(latencies, 99),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
        "remote_calls": sum(s.remote_calls for s in ok),
    }
    if run.shape == "open" and len(run.offsets_s) > 1:
        out["offered_rate_per_s"] = round(len(run.offsets_s) / run.offsets_s[-1], 2)
    firsts = sorted(s.first_s for s in ok if s.first_s is not None)
    if firsts:
        gaps = sorted(g for s in ok for g in s.gaps_s)
        out |= {"first_result_p50_ms": _ms(firsts, 50), "first_result_p99_ms": _ms(firsts, 99)}
        out |= {"between_results_p50_ms": _ms(gaps, 50), "between_results_p99_ms": _ms(gaps, 99)}
    return out


def process_figures(cpu_s: float, peak_rss: int, elapsed_s: float, remote_calls: int) -> dict[str, Any]:
    """The server process's CPU (seconds, cores busy, per remote call) and peak RSS during a phase."""
    out: dict[str, Any] = {
        "server_cpu_s": round(cpu_s, 3),
        "server_cpu_cores": round(cpu_s / max(elapsed_s, 1e-9), 2),
        "server_peak_rss_mb": round(peak_rss / 2**20, 1),
    }
    if remote_calls:
        out["server_cpu_us_per_remote_call"] = round(cpu_s / remote_calls * 1e6, 1)
    return out


def summarize(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """The median repeat's figures (by inputs/s), the main figures replaced by their medians over all repeats.

    With an even number of repeats the kept repeat is the slower middle one; the main figures (and so the ratios
    computed from them) are the true medians, with min/median/max under ``spread``.
    """
    ranked = sorted(repeats, key=lambda r: r["inputs_per_s"])
    middle = dict(ranked[(len(ranked) - 1) // 2])
    spread: dict[str, dict[str, float]] = {}
    for key in SPREAD_KEYS:
        values = [r[key] for r in repeats if r.get(key) is not None]
        if values:
            median = round(statistics.median(values), 2)
            spread[key] = {"min": min(values), "median": median, "max": max(values)}
            middle[key] = median
    middle["spread"] = spread
    middle["repeats"] = len(repeats)
    return middle
