"""``chunkserve bench`` and ``chunkserve tune``: their flags, and the run plan the flags describe."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from service.bench import scenarios as _builtin  # noqa: F401  (registers the built-in scenarios)
from service.bench.argtypes import (
    DefaultLevels,
    positive_float,
    positive_float_list,
    positive_int,
    positive_int_list,
)
from service.bench.corpus import load_corpus
from service.bench.generate import add_generate_arguments
from service.bench.load import Bounds
from service.bench.scenario import SCENARIOS, Workload
from service.bench.targets import TargetSpec, parse_target
from service.config import DEFAULT_MODEL_ID

if TYPE_CHECKING:
    from service.bench.runner import Plan


# Scenarios that run their own course instead of a request driven by a load shape: name -> (help, module, function
# taking the parsed flags and returning the exit code).
STANDALONE: dict[str, tuple[str, str, str]] = {
    "offline": ("`chunkserve run` against the in-process ceiling.", "service.bench.offline", "run_offline_command"),
    "generate": (
        "streamed completions of a random GPT-2 small against in-process generate() (--vs transformers-serve too).",
        "service.bench.generate",
        "run_generate_command",
    ),
}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags bench and tune share: model, corpus, load and output."""
    parser.add_argument("--model", default=DEFAULT_MODEL_ID, help="Model id to send requests to.")
    parser.add_argument("--api-key", default=None, help="Bearer credential (an API key or a JWT) for the server(s).")
    parser.add_argument(
        "--concurrency",
        type=positive_int_list,
        default=DefaultLevels("1,8,32,64"),
        help="Closed loop: comma-separated client counts (with --rate and no --concurrency: open loop only).",
    )
    parser.add_argument(
        "--requests", type=positive_int, default=300, help="Requests per phase (one level, one repeat)."
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        help="Seconds per phase at most (with or instead of --requests).",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="Unmeasured requests before each phase (None: as many as the phase's clients, at least 4).",
    )
    parser.add_argument("--corpus", type=Path, default=None, help="Texts: .jsonl (field 'text') or .txt (a line each).")
    parser.add_argument("--corpus-size", type=positive_int, default=2000, help="Texts taken from the corpus.")
    parser.add_argument(
        "--inputs-per-request", type=positive_int, default=1, help="embeddings/classify: texts per request."
    )
    parser.add_argument("--timeout", type=positive_float, default=60.0, help="Seconds one request may take.")
    parser.add_argument(
        "--out", type=Path, default=None, help="Directory for results.json, report.md and plots (or a .json file)."
    )
    parser.add_argument("--no-progress", action="store_true", help="No live progress bars.")
    parser.add_argument("--no-plots", action="store_true", help="Skip the PNG plots even when matplotlib is installed.")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench command's flags."""
    parser.add_argument(
        "--scenario",
        choices=[*SCENARIOS, *STANDALONE],
        default="embeddings",
        help=" ".join(f"{s.name}: {s.help}" for s in SCENARIOS.values())
        + " "
        + " ".join(f"{name}: {help_text}" for name, (help_text, _, _) in STANDALONE.items()),
    )
    parser.add_argument(
        "--url",
        default=None,
        help="An OpenAI-compatible server to measure [default: http://127.0.0.1:8000 unless --spawn].",
    )
    parser.add_argument(
        "--spawn",
        nargs="?",
        const="",
        default=None,
        metavar="NAME=VALUE,...",
        help="Start chunkserve here for the run, with these settings (e.g. max_batch_size=8,max_wait_ms=0).",
    )
    parser.add_argument(
        "--baseline",
        choices=["naive"],
        default=None,
        help="naive: also start the one-request-at-a-time FastAPI server; ratios are against it.",
    )
    parser.add_argument(
        "--vs",
        action="append",
        default=[],
        metavar="TARGET",
        help=(
            "Another server for the same workload, interleaved in rounds: a URL, 'naive' or "
            "'spawn:NAME=VALUE,...' or 'spawn-ray:replicas=N,NAME=VALUE,...' (chunkserve serve --ray) "
            "(repeatable)."
        ),
    )
    parser.add_argument(
        "--server-pid", type=int, default=None, help="The --url server's process id, to measure its CPU and RSS."
    )
    parser.add_argument(
        "--raw", action="store_true", help="Also measure the in-process ceiling (arrival order and length-sorted)."
    )
    parser.add_argument("--raw-inputs", type=positive_int, default=256, help="Inputs per in-process measurement.")
    parser.add_argument(
        "--rate",
        type=positive_float_list,
        default=None,
        help="Open loop: comma-separated Poisson arrival rates (requests/s).",
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=1, help="Times each phase is repeated (the spread is shown)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the open-loop arrival times.")
    parser.add_argument("--chunks", type=positive_int, default=1000, help="fanout/stream: remote calls per request.")
    parser.add_argument("--text-chars", type=positive_int, default=20_000, help="process: characters per long text.")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="process: characters per chunk [500]; offline: the same [2000: texts whole].",
    )
    parser.add_argument(
        "--targets", choices=["local", "remote", "mixed"], default="local", help="process: where chunks go."
    )
    parser.add_argument("--remote-latency-ms", type=float, default=200.0, help="The fake remote's answer latency.")
    parser.add_argument(
        "--per-host-limit",
        type=positive_int,
        default=None,
        help=(
            "Spawned servers: remote_per_host_limit, with job_window at least as wide; fanout: the bare client's "
            "limit too [the target's own setting, else 64]."
        ),
    )
    parser.add_argument(
        "--remote", default=None, help="A running `chunkserve fake-remote` to call [default: start one when needed]."
    )
    parser.add_argument(
        "--sweep",
        nargs="+",
        default=None,
        metavar="NAME=V1,V2",
        help=(
            "Start chunkserve for each combination of these settings and rank them "
            "(e.g. max_batch_size=1,8 max_wait_ms=0,2)."
        ),
    )
    parser.add_argument(
        "--objective", default="throughput", help="Sweep ranking: 'throughput' or 'throughput@p99<=MS'."
    )
    parser.add_argument(
        "--suite", choices=["readme"], default=None, help="readme: the README's benchmark section, all runs in one go."
    )
    parser.add_argument("--scale", type=int, default=10, help="offline: size of the larger corpus, in corpora.")
    parser.add_argument("--rounds", type=int, default=2, help="offline: alternations of ceiling and 1x run.")
    add_generate_arguments(parser)
    add_common_arguments(parser)


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """The tune command's flags (a small embeddings sweep)."""
    parser.add_argument(
        "--sweep",
        nargs="+",
        default=["max_batch_size=1,4,8,16", "max_wait_ms=0,2"],
        metavar="NAME=V1,V2",
        help="Settings to try [default: max_batch_size=1,4,8,16 max_wait_ms=0,2].",
    )
    parser.add_argument("--objective", default="throughput", help="'throughput' or 'throughput@p99<=MS'.")
    parser.add_argument(
        "--model-path",
        default=None,
        metavar="ID=PATH[:TASK]",
        help="Tune this local model (sets CHUNKSERVE_MODELS for the servers started) [default: the packaged one].",
    )
    add_common_arguments(parser)
    parser.set_defaults(concurrency="32", requests=200)


def workload(args: argparse.Namespace) -> Workload:
    """The requests' contents from the flags."""
    return Workload(
        model=args.model,
        texts=load_corpus(args.corpus, args.corpus_size),
        inputs_per_request=args.inputs_per_request,
        chunks=getattr(args, "chunks", 1000),
        text_chars=getattr(args, "text_chars", 20_000),
        chunk_size=getattr(args, "chunk_size", None) or 500,
        targets=getattr(args, "targets", "local"),
        timeout_s=args.timeout,
    )


def bounds(args: argparse.Namespace) -> Bounds:
    """Count/duration bounds and the warm-up from the flags."""
    return Bounds(requests=args.requests, duration_s=args.duration, warmup=args.warmup)


def target_specs(args: argparse.Namespace) -> list[TargetSpec]:
    """The primary target (--spawn or --url), then the baseline, then each --vs, in that order.

    Raises:
        SystemExit: a --vs value is no target.
    """
    try:
        primary = (
            parse_target("spawn:" + args.spawn)
            if args.spawn is not None
            else parse_target(args.url or "http://127.0.0.1:8000")
        )
        specs = [primary]
        if args.baseline:
            specs.append(parse_target(args.baseline))
        specs += [parse_target(v) for v in args.vs]
    except ValueError as exc:
        raise SystemExit(f"chunkserve bench: {exc}") from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise SystemExit(f"chunkserve bench: the same target twice: {names}")
    return specs


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The run the bench flags describe."""
    rates = _floats(args.rate or "")
    given = not isinstance(args.concurrency, DefaultLevels)
    concurrency = [] if rates and not given else _ints(args.concurrency)
    from service.bench.runner import Plan

    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    return Plan(
        scenario=args.scenario,
        workload=workload(args),
        targets=target_specs(args),
        concurrency=concurrency,
        rates=rates,
        bounds=bounds(args),
        repeats=args.repeats,
        baseline="naive" if args.baseline else None,
        raw_inputs=args.raw_inputs if args.raw else 0,
        headers=headers,
        server_pid=args.server_pid,
        remote_latency_ms=args.remote_latency_ms,
        per_host_limit=args.per_host_limit,
        remote=args.remote,
        progress=not args.no_progress,
        seed=args.seed,
    )
