"""The benchmark harness itself: the load generator counts right, and the in-process ceiling is self-consistent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.base import Model
from service.bench.corpus import load_corpus
from service.bench.load import _histogram_delta, closed_loop, percentile
from service.bench.raw import measure_raw


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (50.0, 90.0, 99.0)
    assert percentile([7.0], 99) == 7.0


def test_histogram_delta_turns_cumulative_buckets_into_counts() -> None:
    before = {"1.0": 2, "4.0": 3, "+Inf": 3, "_sum": 5, "_count": 3}
    after = {"1.0": 4, "4.0": 8, "+Inf": 9, "_sum": 35, "_count": 9}
    mean, buckets = _histogram_delta(before, after)
    assert mean == 5.0  # (35 - 5) / (9 - 3)
    assert buckets == {"<=1.0": 2, "<=4.0": 3, "<=+Inf": 1}


def test_the_built_in_corpus_is_deterministic_and_in_range() -> None:
    texts = load_corpus(None, 50)
    assert texts == load_corpus(None, 50)
    assert len(texts) == 50
    assert all(20 <= len(t.split()) <= 250 for t in texts)


async def test_closed_loop_sends_exactly_the_requests_asked_for(tiny_url: str) -> None:
    texts = load_corpus(None, 30)
    phase = await closed_loop(tiny_url, "tiny-embed", texts, 4, requests=24)
    assert (phase.requests, phase.errors) == (24, 0)
    assert phase.p50_ms <= phase.p90_ms <= phase.p99_ms
    # The warm-up round is outside the window; the 24 measured inputs all went through some batch.
    assert phase.mean_batch_size is not None and 1 <= phase.mean_batch_size <= 4
    # The mean is reported to 2 decimals, so batches x mean is 24 to within half a hundredth per batch.
    batches = sum(phase.batch_size_counts.values())
    assert batches * phase.mean_batch_size == pytest.approx(24, abs=0.005 * batches + 1e-9)


def test_measure_raw_reports_the_best_arrival_batch_as_the_ceiling(tiny_embedder: Model) -> None:
    texts = load_corpus(None, 24)
    raw = measure_raw(tiny_embedder, texts, batch_sizes=(1, 4), single_calls=5, window=8)
    assert raw["inputs"] == 24
    assert raw["ceiling_inputs_per_s"] == max(raw["arrival_inputs_per_s"].values())
    assert raw["ceiling_inputs_per_s"] == raw["arrival_inputs_per_s"][raw["best_arrival_batch_size"]]
    assert raw["best_sorted_inputs_per_s"] == max(raw["sorted_inputs_per_s"].values())
    assert raw["batch1_p50_ms"] > 0


def test_bench_command_writes_its_report(tiny_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "service.cli", "bench", "--url", tiny_url, "--model", "tiny-embed"]
    command += ["--concurrency", "1,3", "--requests", "9", "--corpus-size", "20", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [p["concurrency"] for p in report["server"]] == [1, 3]
    assert [p["requests"] for p in report["server"]] == [9, 9]
    assert report["machine"]["cpus"] >= 1
