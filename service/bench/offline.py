"""``chunkserve bench --scenario offline``: `chunkserve run` against the in-process ceiling, and its peak memory.

The corpus is written as JSONL; the ceiling (``--raw``'s measurement) runs on the very chunk texts the offline
run will see, in this process, before the runs. Then `chunkserve run` runs as a child process on the corpus and on
a corpus ``scale`` times larger; each child's own peak RSS comes from ``wait4`` and its throughput (model loading
excluded) from ``--summary-json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from service.bench.corpus import builtin_corpus, load_corpus
from service.bench.procs import rss_bytes
from service.chunking import chunk_text

RawMeasure = Callable[[list[str]], dict[str, Any]]


def _write_corpus(path: Path, texts: Sequence[str]) -> None:
    with path.open("wb") as fh:
        for i, text in enumerate(texts):
            fh.write(orjson.dumps({"id": f"doc-{i}", "text": text}) + b"\n")


def _run_child(args: list[str], env: dict[str, str], output: Path) -> tuple[int, int, int]:
    """Run ``chunkserve ARGS``: its exit code, its own peak RSS, and its largest RSS seen once ``output`` exists.

    The peak over the whole life includes loading the model; the second figure is the processing phase alone,
    which is where a corpus-size leak would show.
    """
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env)
    working = [0]

    def sample() -> None:
        while proc.returncode is None:
            if output.exists():
                working[0] = max(working[0], rss_bytes(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    return proc.returncode, usage.ru_maxrss * 1024, working[0]  # Linux reports ru_maxrss in kilobytes


def run_offline_scenario(
    *,
    model: str,
    corpus: Path | None,
    size: int,
    scale: int,
    chunk_size: int,
    raw_inputs: int,
    measure_raw: RawMeasure,
) -> dict[str, Any]:
    """Measure the ceiling, then `chunkserve run` on 1x and ``scale``x the corpus; returns the report."""
    texts = load_corpus(corpus, size)
    larger = builtin_corpus(size * scale) if corpus is None else texts * scale
    chunks = [c.text for text in texts for c in chunk_text(text, size=chunk_size)]
    raw = measure_raw(chunks[:raw_inputs])
    print(
        f"in-process ceiling: {raw['ceiling_inputs_per_s']} inputs/s (arrival order), "
        f"{raw['best_sorted_inputs_per_s']} inputs/s (length-sorted)",
        flush=True,
    )
    env = {**os.environ, "CHUNKSERVE_LOG_LEVEL": "warning"}
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="chunkserve-offline-bench-") as tmp:
        for label, corpus_texts in (("1x", texts), (f"{scale}x", larger)):
            src, out, summary = Path(tmp, f"{label}.jsonl"), Path(tmp, f"{label}.out.jsonl"), Path(tmp, f"{label}.json")
            _write_corpus(src, corpus_texts)
            args = ["run", str(src), "-o", str(out), "--id-field", "id", "--target", model]
            args += ["--chunk-size", str(chunk_size), "--quiet", "--summary-json", str(summary)]
            code, peak, working = _run_child(args, env, out)
            if code != 0:
                raise SystemExit(f"bench: chunkserve run on the {label} corpus exited with {code}")
            result = json.loads(summary.read_text())
            runs[label] = {
                "documents": len(corpus_texts),
                "chunks": result["chunks"],
                "elapsed_s": result["elapsed_s"],
                "load_s": result["load_s"],
                "chunks_per_s": result["chunks_per_s"],
                "peak_rss_mb": round(peak / 2**20, 1),
                "processing_rss_mb": round(working / 2**20, 1),
            }
            print(f"chunkserve run {label}: {json.dumps(runs[label])}", flush=True)
            out.unlink()
    one, big = runs["1x"], runs[f"{scale}x"]
    ratios = {
        "offline_over_ceiling": round(one["chunks_per_s"] / raw["ceiling_inputs_per_s"], 3),
        "offline_over_sorted": round(one["chunks_per_s"] / raw["best_sorted_inputs_per_s"], 3),
        f"offline_{scale}x_over_ceiling": round(big["chunks_per_s"] / raw["ceiling_inputs_per_s"], 3),
        f"peak_rss_{scale}x_over_1x": round(big["peak_rss_mb"] / one["peak_rss_mb"], 3),
        f"processing_rss_{scale}x_over_1x": round(big["processing_rss_mb"] / max(one["processing_rss_mb"], 1e-9), 3),
    }
    print("ratios:", json.dumps(ratios), flush=True)
    return {
        "model": model,
        "corpus": {"documents": len(texts), "source": str(corpus or "built-in"), "scale": scale},
        "chunk_size": chunk_size,
        "raw": raw,
        "runs": runs,
        "ratios": ratios,
    }
