"""``chunkserve run`` with and without ``--ordered`` on the same corpus, alternated; writes bench/results/ordered.json.

    python scripts/bench_ordered.py --docs 400 --rounds 3

Each run is a child process; throughput is the run's own chunks/s (model loading excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from service.bench.corpus import builtin_corpus


def _run(src: Path, work: Path, ordered: bool) -> float:
    out, summary = work / "out.jsonl", work / "summary.json"
    cmd = [sys.executable, "-m", "service.cli", "run", str(src), "-o", str(out), "--overwrite", "--quiet"]
    cmd += ["--chunk-size", "2000", "--summary-json", str(summary), *(["--ordered"] if ordered else [])]
    subprocess.run(cmd, check=True)
    return float(json.loads(summary.read_text())["chunks_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ordered.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / "corpus.jsonl"
        src.write_text("".join(json.dumps({"text": t}) + "\n" for t in builtin_corpus(args.docs)), encoding="utf-8")
        runs: dict[str, list[float]] = {"completion_order": [], "ordered": []}
        for _ in range(args.rounds):
            runs["completion_order"].append(_run(src, work, ordered=False))
            runs["ordered"].append(_run(src, work, ordered=True))
    medians = {k: statistics.median(v) for k, v in runs.items()}
    report = {
        "command": f"python scripts/bench_ordered.py --docs {args.docs} --rounds {args.rounds}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "chunks_per_s": runs,
        "median_chunks_per_s": medians,
        "ordered_over_completion_order": round(medians["ordered"] / medians["completion_order"], 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
