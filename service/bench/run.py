"""``chunkserve bench`` and ``chunkserve tune``: run what the flags ask, print the summary, write the outputs."""

from __future__ import annotations

import argparse
import importlib
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from service.bench.environment import environment
from service.bench.options import STANDALONE, add_bench_arguments, add_tune_arguments, plan_from_args

__all__ = ["add_bench_arguments", "add_tune_arguments", "run_bench", "run_tune"]


def _results(runs: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    return {
        "command": shlex.join(["chunkserve", *argv]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment(),
        "runs": runs,
    }


def _failed_phases(results: dict[str, Any]) -> int:
    """Phases with errors (shed load excluded) across all runs."""
    count = 0
    for run in results["runs"].values():
        for levels in run.get("servers", {}).values():
            count += sum(1 for fig in levels.values() if fig.get("errors"))
    return count


def finish(results: dict[str, Any], out: Path | None, plots: bool) -> int:
    """Print the summary, write results.json, report.md and the plots; 1 when any phase had errors."""
    from service.bench.report import summary_text, write_outputs

    print(summary_text(results))
    if out is not None:
        for path in write_outputs(results, out, plots=plots):
            print(f"wrote {path}")
    return 1 if _failed_phases(results) else 0


def _argv() -> list[str]:
    return sys.argv[1:] if sys.argv and sys.argv[0].endswith(("chunkserve", "cli.py")) else ["bench"]


def _stop_children_on_sigterm() -> None:
    # SIGTERM would end this process at once and orphan the servers it started; as SystemExit, every `with` that
    # started one stops it first.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def run_bench(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run the benchmark the flags describe."""
    argv = argv if argv is not None else _argv()
    _stop_children_on_sigterm()
    if args.scenario in STANDALONE:
        _, module, function = STANDALONE[args.scenario]
        code: int = getattr(importlib.import_module(module), function)(args)
        return code
    if args.suite:
        from service.bench.suite import run_suite

        runs = run_suite(args)
    elif args.sweep:
        from service.bench.sweep import run_sweep

        runs = {"sweep": run_sweep(args)}
    else:
        from service.bench.runner import run_plan

        runs = {args.scenario: run_plan(plan_from_args(args))}
    return finish(_results(runs, argv), args.out, plots=not args.no_plots)


def run_tune(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """A small sweep on this machine; prints the settings to use."""
    _stop_children_on_sigterm()
    from service.bench.sweep import run_tune_sweep

    sweep = run_tune_sweep(args)
    code = finish(_results({"sweep": sweep}, argv if argv is not None else _argv()), args.out, plots=not args.no_plots)
    winner = sweep.get("winner")
    if winner is None:
        print("chunkserve tune: no setting met the objective", file=sys.stderr)
        return 1
    print(f"\nUse on this machine:\n  {winner['command']}\nor in the environment:\n  {winner['env']}")
    return code
