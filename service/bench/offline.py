"""``chunkserve bench --scenario offline``: `chunkserve run` against the in-process ceiling, and its peak memory.

The corpus is written as JSONL; the ceiling (``--raw``'s measurement) runs in this process on the very chunk texts
the offline run sees, alternating with `chunkserve run` as a child process on the corpus; then a child runs on a
corpus ``scale`` times larger. Each child's peak RSS comes from ``wait4``, its RSS while processing from sampling,
and its throughput (model loading excluded) from ``--summary-json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from service.bench.corpus import builtin_corpus, load_corpus
from service.bench.procs import rss_bytes
from service.jobs.chunking import chunk_text

RawMeasure = Callable[[list[str]], dict[str, Any]]


def _write_corpus(path: Path, texts: Sequence[str]) -> None:
    with path.open("wb") as fh:
        for i, text in enumerate(texts):
            fh.write(orjson.dumps({"id": f"doc-{i}", "text": text}) + b"\n")


@dataclass
class _Child:
    code: int
    peak_rss: int  # the whole life, model loading included
    processing_rss: list[int]  # sampled once the output exists: where a leak with corpus size would show


def _run_child(args: list[str], env: dict[str, str], output: Path) -> _Child:
    """Run ``chunkserve ARGS``; its exit code, its own peak RSS (``wait4``) and RSS samples while processing."""
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env)
    samples: list[int] = []

    def sample() -> None:
        while proc.returncode is None:
            if output.exists() and (rss := rss_bytes(proc.pid)):
                samples.append(rss)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    return _Child(proc.returncode, usage.ru_maxrss * 1024, samples)  # Linux reports ru_maxrss in kilobytes


def _offline(tmp: str, label: str, texts: Sequence[str], model: str, chunk_size: int) -> dict[str, Any]:
    src, out, summary = Path(tmp, f"{label}.jsonl"), Path(tmp, f"{label}.out.jsonl"), Path(tmp, f"{label}.json")
    if not src.exists():
        _write_corpus(src, texts)
    out.unlink(missing_ok=True)
    args = ["run", str(src), "-o", str(out), "--id-field", "id", "--target", model]
    args += ["--chunk-size", str(chunk_size), "--quiet", "--summary-json", str(summary)]
    child = _run_child(args, {**os.environ, "CHUNKSERVE_LOG_LEVEL": "warning"}, out)
    if child.code != 0:
        raise SystemExit(f"bench: chunkserve run on the {label} corpus exited with {child.code}")
    out.unlink()
    result = json.loads(summary.read_text())
    mb = 2**20
    run = {
        "documents": len(texts),
        "chunks": result["chunks"],
        "elapsed_s": result["elapsed_s"],
        "load_s": result["load_s"],
        "chunks_per_s": result["chunks_per_s"],
        "models": result["models"],
        "peak_rss_mb": round(child.peak_rss / mb, 1),
        "processing_rss_max_mb": round(max(child.processing_rss, default=0) / mb, 1),
        "processing_rss_median_mb": round(statistics.median(child.processing_rss or [0]) / mb, 1),
    }
    print(f"chunkserve run {label}: {json.dumps(run)}", flush=True)
    return run


def run_offline_scenario(
    *,
    model: str,
    corpus: Path | None,
    size: int,
    scale: int,
    chunk_size: int,
    raw_inputs: int,
    rounds: int,
    measure_raw: RawMeasure,
) -> dict[str, Any]:
    """``rounds`` of (ceiling, `chunkserve run` on 1x), then one run on ``scale``x the corpus; returns the report.

    Ratios use the best of the rounds on each side, so that a noisy neighbour in one round does not decide them.
    """
    texts = load_corpus(corpus, size)
    larger = builtin_corpus(size * scale) if corpus is None else texts * scale
    chunks = [c.text for text in texts for c in chunk_text(text, size=chunk_size)]
    raws: list[dict[str, Any]] = []
    ones: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="chunkserve-offline-bench-") as tmp:
        for _ in range(rounds):
            raws.append(raw := measure_raw(chunks[:raw_inputs]))
            print(
                f"in-process ceiling: {raw['ceiling_inputs_per_s']} inputs/s (arrival order), "
                f"{raw['best_sorted_inputs_per_s']} inputs/s (length-sorted)",
                flush=True,
            )
            ones.append(_offline(tmp, "1x", texts, model, chunk_size))
        big = _offline(tmp, f"{scale}x", larger, model, chunk_size)
    ceiling = max(r["ceiling_inputs_per_s"] for r in raws)
    sorted_ceiling = max(r["best_sorted_inputs_per_s"] for r in raws)
    one = max(ones, key=lambda r: r["chunks_per_s"])
    ratios = {
        "offline_over_ceiling": round(one["chunks_per_s"] / ceiling, 3),
        "offline_over_sorted": round(one["chunks_per_s"] / sorted_ceiling, 3),
        f"offline_{scale}x_over_ceiling": round(big["chunks_per_s"] / ceiling, 3),
        f"peak_rss_{scale}x_over_1x": round(big["peak_rss_mb"] / one["peak_rss_mb"], 3),
        f"processing_rss_median_{scale}x_over_1x": round(
            big["processing_rss_median_mb"] / max(one["processing_rss_median_mb"], 1e-9), 3
        ),
    }
    print("ratios:", json.dumps(ratios), flush=True)
    return {
        "model": model,
        "corpus": {"documents": len(texts), "source": str(corpus or "built-in"), "scale": scale},
        "chunk_size": chunk_size,
        "rounds": rounds,
        "raw": raws,
        "runs": {"1x": ones, f"{scale}x": big},
        "ratios": ratios,
    }


def run_offline_command(args: argparse.Namespace) -> int:
    """``bench --scenario offline``: run it and write the JSON report to ``--out`` (a file, or DIR/results.json)."""
    from service.bench.environment import environment
    from service.bench.raw import load_and_measure

    result = run_offline_scenario(
        model=args.model,
        corpus=args.corpus,
        size=args.corpus_size,
        scale=args.scale,
        chunk_size=args.chunk_size or 2000,
        raw_inputs=args.raw_inputs,
        rounds=args.rounds,
        measure_raw=lambda texts: load_and_measure(args.model, texts),
    )
    if args.out is not None:
        out = args.out if args.out.suffix == ".json" else args.out / "results.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"scenario": "offline", "environment": environment(), **result}, indent=2))
        print(f"wrote {out}")
    return 0
