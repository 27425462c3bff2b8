"""Batch figures from a chunkserve server's ``/metrics``: the difference between a scrape before and after a phase."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
from prometheus_client.parser import text_string_to_metric_families

# (sample name, sorted label pairs) -> value
Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Scrape | None:
    """Every sample of ``/metrics``; None when the server has no Prometheus endpoint (not chunkserve)."""
    try:
        response = await client.get("/metrics")
    except httpx.HTTPError:
        return None
    if response.status_code != 200 or "chunkserve_" not in response.text:
        return None
    out: Scrape = {}
    for family in text_string_to_metric_families(response.text):
        if not family.name.startswith("chunkserve_"):
            continue
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """Sum over matching series of after - before."""
    total = 0.0
    for (sample, pairs), value in after.items():
        if sample != name or any(dict(pairs).get(k) != v for k, v in labels.items()):
            continue
        total += value - before.get((sample, pairs), 0.0)
    return total


def histogram_counts(before: Scrape, after: Scrape, name: str, model: str) -> dict[str, int]:
    """Observations per bucket (``"<=8"`` → n) of histogram ``name`` for ``model`` during the phase."""
    bounds: dict[float, str] = {}
    for sample, pairs in after:
        labels = dict(pairs)
        if sample == f"{name}_bucket" and labels.get("model") == model:
            bounds[float(labels["le"])] = labels["le"]
    counts: dict[str, int] = {}
    previous = 0.0
    for bound in sorted(bounds):
        cumulative = _delta(before, after, f"{name}_bucket", model=model, le=bounds[bound])
        if cumulative - previous > 0:
            label = bounds[bound].removesuffix(".0")
            counts[f"<={label}"] = round(cumulative - previous)
        previous = cumulative
    return counts


def _mean(before: Scrape, after: Scrape, name: str, model: str) -> float | None:
    count = _delta(before, after, f"{name}_count", model=model)
    return _delta(before, after, f"{name}_sum", model=model) / count if count > 0 else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def batch_figures(before: Scrape, after: Scrape, model: str) -> dict[str, Any]:
    """Batches, their size distribution, fill ratio, padding waste, queue wait vs compute, remote outcomes."""
    batches = _delta(before, after, "chunkserve_batch_size_count", model=model)
    inputs = _delta(before, after, "chunkserve_batch_size_sum", model=model)
    padding = _delta(before, after, "chunkserve_padding_tokens_total", model=model)
    real = _delta(before, after, "chunkserve_input_tokens_total", model=model)
    wait = _mean(before, after, "chunkserve_queue_wait_seconds", model)
    compute = _mean(before, after, "chunkserve_inference_seconds", model)
    outcomes: dict[str, int] = {}
    for sample, pairs in after:
        if sample == "chunkserve_remote_calls_total":
            outcome = dict(pairs).get("outcome", "?")
            n = after[(sample, pairs)] - before.get((sample, pairs), 0.0)
            if n:
                outcomes[outcome] = outcomes.get(outcome, 0) + round(n)
    return {
        "batches": round(batches),
        "batched_inputs": round(inputs),
        "mean_batch_size": _round(inputs / batches if batches else None, 2),
        "batch_size_counts": histogram_counts(before, after, "chunkserve_batch_size", model),
        "mean_fill_ratio": _round(_mean(before, after, "chunkserve_batch_fill_ratio", model)),
        "padding_share": _round(padding / (padding + real) if padding + real else None),
        "queue_wait_ms_mean": _round(None if wait is None else wait * 1000, 2),
        "compute_ms_mean": _round(None if compute is None else compute * 1000, 2),
        "remote_outcomes": outcomes,
        "remote_retries": round(_delta(before, after, "chunkserve_remote_retries_total")),
    }
