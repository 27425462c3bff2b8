"""``chunkserve bench`` and ``chunkserve tune``: their flags, and the run plan the flags describe."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


Flag = tuple[str, dict[str, Any]]


def _flag(name: str, help_text: str, **options: Any) -> Flag:
    """One row of a flag table: ``parser.add_argument(name, help=help_text, **options)``."""
    return name, {"help": help_text, **options}


def _add(parser: argparse.ArgumentParser, flags: Iterable[Flag]) -> None:
    for name, options in flags:
        parser.add_argument(name, **options)


# Flags bench and tune share: model, corpus, load and output.
COMMON_FLAGS: tuple[Flag, ...] = (
    _flag("--model", "Model id to send requests to.", default=DEFAULT_MODEL_ID),
    _flag("--api-key", "Bearer credential (an API key or a JWT) for the server(s).", default=None),
    _flag(
        "--concurrency",
        "Closed loop: comma-separated client counts (with --rate and no --concurrency: open loop only).",
        type=positive_int_list,
        default=DefaultLevels("1,8,32,64"),
    ),
    _flag("--requests", "Requests per phase (one level, one repeat).", type=positive_int, default=300),
    _flag(
        "--duration", "Seconds per phase at most (with or instead of --requests).", type=positive_float, default=None
    ),
    _flag(
        "--warmup",
        "Unmeasured requests before each phase (None: as many as the phase's clients, at least 4).",
        type=int,
        default=None,
    ),
    _flag("--corpus", "Texts: .jsonl (field 'text') or .txt (a line each).", type=Path, default=None),
    _flag("--corpus-size", "Texts taken from the corpus.", type=positive_int, default=2000),
    _flag("--inputs-per-request", "embeddings/classify: texts per request.", type=positive_int, default=1),
    _flag("--timeout", "Seconds one request may take.", type=positive_float, default=60.0),
    _flag("--out", "Directory for results.json, report.md and plots (or a .json file).", type=Path, default=None),
    _flag("--no-progress", "No live progress bars.", action="store_true"),
    _flag("--no-plots", "Skip the PNG plots even when matplotlib is installed.", action="store_true"),
)

# The bench command's own flags, after --scenario.
BENCH_FLAGS: tuple[Flag, ...] = (
    _flag(
        "--url", "An OpenAI-compatible server to measure [default: http://127.0.0.1:8000 unless --spawn].", default=None
    ),
    _flag(
        "--spawn",
        "Start chunkserve here for the run, with these settings (e.g. max_batch_size=8,max_wait_ms=0).",
        nargs="?",
        const="",
        default=None,
        metavar="NAME=VALUE,...",
    ),
    _flag(
        "--baseline",
        "naive: also start the one-request-at-a-time FastAPI server; ratios are against it.",
        choices=["naive"],
        default=None,
    ),
    _flag(
        "--vs",
        "Another server for the same workload, interleaved in rounds: a URL, 'naive' or 'spawn:NAME=VALUE,...' or "
        "'spawn-ray:replicas=N,NAME=VALUE,...' (chunkserve serve --ray) (repeatable).",
        action="append",
        default=[],
        metavar="TARGET",
    ),
    _flag("--server-pid", "The --url server's process id, to measure its CPU and RSS.", type=int, default=None),
    _flag("--raw", "Also measure the in-process ceiling (arrival order and length-sorted).", action="store_true"),
    _flag("--raw-inputs", "Inputs per in-process measurement.", type=positive_int, default=256),
    _flag(
        "--rate",
        "Open loop: comma-separated Poisson arrival rates (requests/s).",
        type=positive_float_list,
        default=None,
    ),
    _flag("--repeats", "Times each phase is repeated (the spread is shown).", type=positive_int, default=1),
    _flag("--seed", "Seed of the open-loop arrival times.", type=int, default=0),
    _flag("--chunks", "fanout/stream: remote calls per request.", type=positive_int, default=1000),
    _flag("--text-chars", "process: characters per long text.", type=positive_int, default=20_000),
    _flag(
        "--chunk-size",
        "process: characters per chunk [500]; offline: the same [2000: texts whole].",
        type=int,
        default=None,
    ),
    _flag("--targets", "process: where chunks go.", choices=["local", "remote", "mixed"], default="local"),
    _flag("--remote-latency-ms", "The fake remote's answer latency.", type=float, default=200.0),
    _flag(
        "--per-host-limit",
        "Spawned servers: remote_per_host_limit, with job_window at least as wide; fanout: the bare client's limit "
        "too [the target's own setting, else 64].",
        type=positive_int,
        default=None,
    ),
    _flag("--remote", "A running `chunkserve fake-remote` to call [default: start one when needed].", default=None),
    _flag(
        "--sweep",
        "Start chunkserve for each combination of these settings and rank them (e.g. max_batch_size=1,8 "
        "max_wait_ms=0,2).",
        nargs="+",
        default=None,
        metavar="NAME=V1,V2",
    ),
    _flag("--objective", "Sweep ranking: 'throughput' or 'throughput@p99<=MS'.", default="throughput"),
    _flag("--suite", "readme: the README's benchmark section, all runs in one go.", choices=["readme"], default=None),
    _flag("--scale", "offline: size of the larger corpus, in corpora.", type=int, default=10),
    _flag("--rounds", "offline: alternations of ceiling and 1x run.", type=int, default=2),
)

# The tune command's own flags (a small embeddings sweep).
TUNE_FLAGS: tuple[Flag, ...] = (
    _flag(
        "--sweep",
        "Settings to try [default: max_batch_size=1,4,8,16 max_wait_ms=0,2].",
        nargs="+",
        default=["max_batch_size=1,4,8,16", "max_wait_ms=0,2"],
        metavar="NAME=V1,V2",
    ),
    _flag("--objective", "'throughput' or 'throughput@p99<=MS'.", default="throughput"),
    _flag(
        "--model-path",
        "Tune this local model (sets CHUNKSERVE_MODELS for the servers started) [default: the packaged one].",
        default=None,
        metavar="ID=PATH[:TASK]",
    ),
)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags bench and tune share: model, corpus, load and output."""
    _add(parser, COMMON_FLAGS)


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
    _add(parser, BENCH_FLAGS)
    add_generate_arguments(parser)
    add_common_arguments(parser)


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """The tune command's flags (a small embeddings sweep)."""
    _add(parser, TUNE_FLAGS)
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
