"""``chunkserve bench --suite readme``: every run behind the README's benchmark section, in one command.

Each run is the bench command line written below (plus the suite's own ``--requests``, ``--repeats``, corpus and
model flags), so each figure in the README can be reproduced alone.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

# name -> bench flags. Counts come from the suite's --requests (closed and open loop) and --repeats.
README_RUNS: dict[str, str] = {
    # chunkserve vs the naive baseline vs batching off, against the in-process ceiling.
    "embeddings": "--scenario embeddings --spawn --baseline naive --vs spawn:max_batch_size=1 --raw "
    "--concurrency 1,8,32,64",
    # Open loop: Poisson arrivals at fixed rates; latency counted from when each request was due.
    "open_loop": "--scenario embeddings --spawn --baseline naive --rate 10,25,40 --duration 30",
    # Which batching settings win on this machine.
    "sweep": "--scenario embeddings --sweep max_batch_size=1,4,8,16 max_wait_ms=0,2 --concurrency 32",
    # chunkserve's CPU per remote call against a bare client's.
    "fanout": "--scenario fanout --spawn --chunks 1000 --concurrency 1 --remote-latency-ms 200",
    # Time to the first result of a streamed job.
    "stream": "--scenario stream --spawn --chunks 100 --concurrency 1 --remote-latency-ms 200",
}
# Requests per phase for runs whose requests are whole jobs, not single inputs.
_JOB_REQUESTS = {"fanout": 10, "stream": 10}


def suite_args(args: argparse.Namespace, name: str) -> argparse.Namespace:
    """The bench flags of run ``name``, with the suite's counts, corpus and model."""
    from service.bench.options import add_bench_arguments

    parser = argparse.ArgumentParser(prog="chunkserve bench")
    add_bench_arguments(parser)
    words = shlex.split(README_RUNS[name])
    requests = _JOB_REQUESTS.get(name, args.requests)
    words += [
        "--requests",
        str(requests),
        "--repeats",
        str(1 if name in ("sweep", "fanout", "stream") else args.repeats),
    ]
    words += ["--model", args.model, "--corpus-size", str(args.corpus_size), "--timeout", str(args.timeout)]
    words += ["--raw-inputs", str(args.raw_inputs)]
    if args.corpus is not None:
        words += ["--corpus", str(args.corpus)]
    if args.no_progress:
        words.append("--no-progress")
    return parser.parse_args(words)


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    """Every run of the suite, in order; the results keyed by run name."""
    from service.bench.options import plan_from_args
    from service.bench.runner import run_plan
    from service.bench.sweep import run_sweep

    runs: dict[str, Any] = {}
    for name in README_RUNS:
        run_args = suite_args(args, name)
        print(f"\n### suite run {name}: chunkserve bench {README_RUNS[name]}", flush=True)
        runs[name] = run_sweep(run_args) if run_args.sweep else run_plan(plan_from_args(run_args))
    return runs
