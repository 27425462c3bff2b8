"""The in-process ceiling: the same model on the same corpus with no server in between."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from models.base import Model


def _throughput(model: Model, batches: Sequence[Sequence[str]]) -> float:
    count = 0
    start = time.perf_counter()
    for batch in batches:
        model.predict(model.encode(batch))
        count += len(batch)
    return count / (time.perf_counter() - start)


def _cut(texts: Sequence[str], size: int) -> list[Sequence[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def _sorted_windows(model: Model, texts: Sequence[str], window: int, size: int) -> list[list[str]]:
    lengths = model.count_tokens(list(texts))
    batches: list[list[str]] = []
    for w in range(0, len(texts), window):
        chunk = sorted(range(w, min(w + window, len(texts))), key=lambda i: lengths[i])
        batches.extend([texts[i] for i in chunk[j : j + size]] for j in range(0, len(chunk), size))
    return batches


def measure_raw(
    model: Model,
    texts: Sequence[str],
    *,
    batch_sizes: Sequence[int] = (1, 4, 8, 16, 32, 64),
    single_calls: int = 60,
    window: int = 64,
) -> dict[str, Any]:
    """Batch-of-1 latency, arrival-order throughput per batch size, and length-sorted throughput."""
    model.predict(model.encode(list(texts[:8])))  # warm caches and allocator
    singles = []
    for text in texts[:single_calls]:
        start = time.perf_counter()
        model.predict(model.encode([text]))
        singles.append(time.perf_counter() - start)
    arrival = {size: round(_throughput(model, _cut(texts, size)), 2) for size in batch_sizes}
    best_size = max(arrival, key=lambda s: arrival[s])
    sorted_rates = {
        size: round(_throughput(model, _sorted_windows(model, texts, window, size)), 2) for size in (8, 16, 32)
    }
    return {
        "inputs": len(texts),
        "batch1_p50_ms": round(statistics.median(singles) * 1000, 2),
        "arrival_inputs_per_s": arrival,
        "best_arrival_batch_size": best_size,
        "ceiling_inputs_per_s": arrival[best_size],
        "sorted_window": window,
        "sorted_inputs_per_s": sorted_rates,
        "best_sorted_inputs_per_s": max(sorted_rates.values()),
    }


def load_and_measure(model_id: str, texts: Sequence[str]) -> dict[str, Any]:
    """Load ``model_id`` as the server would (settings from the environment) and measure it in this process.

    Raises:
        SystemExit: no configured model has that id.
    """
    from service.config import Settings
    from service.inference.engine import set_torch_threads
    from service.runtime import default_loader, effective_threads, load_options

    settings = Settings()
    entry = next((m for m in settings.model_entries() if m.id == model_id), None)
    if entry is None:
        raise SystemExit(f"bench --raw: model {model_id!r} is not in the configured models")
    threads = effective_threads(settings)
    set_torch_threads(threads)
    model = default_loader(entry, load_options(settings, threads))  # CHUNKSERVE_BACKEND too
    return {"torch_threads": threads, **measure_raw(model, texts)}
