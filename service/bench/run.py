"""``chunkserve bench``: closed-loop load against a server, plus the in-process ceiling (``--raw``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
from pathlib import Path
from typing import Any

from service.bench.argtypes import positive_float, positive_int, positive_int_list
from service.bench.corpus import load_corpus
from service.bench.load import PhaseResult, closed_loop
from service.bench.procs import spawned
from service.config import DEFAULT_MODEL_ID, Settings


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench command's flags."""
    parser.add_argument(
        "--scenario",
        choices=["embeddings", "process", "stream", "offline", "generate"],
        default="embeddings",
        help=(
            "embeddings: closed-loop /v1/embeddings; process: one long text fanned out to a fake remote; "
            "stream: time to the first SSE result; offline: `chunkserve run` against the in-process ceiling; "
            "generate: streamed completions of a random GPT-2 small vs. in-process generate()."
        ),
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="Server to measure.")
    parser.add_argument("--spawn", action="store_true", help="Start a server (CHUNKSERVE_* settings) for the run.")
    parser.add_argument("--model", default=DEFAULT_MODEL_ID, help="Model id to send requests to.")
    parser.add_argument(
        "--api-key",
        default=None,
        help="Bearer credential (an API key or a JWT) for a server with authentication on.",
    )
    parser.add_argument(
        "--concurrency", type=positive_int_list, default="1,8,32,64", help="Comma-separated client counts."
    )
    parser.add_argument("--requests", type=positive_int, default=300, help="Requests per concurrency level.")
    parser.add_argument(
        "--duration", type=positive_float, default=None, help="Seconds per level (instead of --requests)."
    )
    parser.add_argument("--corpus", type=Path, default=None, help="Texts: .txt (a line each) or .jsonl (text).")
    parser.add_argument("--corpus-size", type=int, default=2000, help="Texts in the built-in corpus.")
    parser.add_argument("--raw", action="store_true", help="Also measure the in-process ceiling.")
    parser.add_argument("--raw-inputs", type=int, default=256, help="Inputs per in-process measurement.")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    parser.add_argument("--chunks", type=int, default=1000, help="process: chunks per request.")
    parser.add_argument("--remote-latency-ms", type=float, default=200.0, help="process: fake remote latency.")
    parser.add_argument("--limits", default="1000,100", help="process: per-host limits to compare.")
    parser.add_argument("--repeats", type=int, default=20, help="process: requests per limit.")
    parser.add_argument("--scale", type=int, default=10, help="offline: size of the larger corpus, in corpora.")
    parser.add_argument("--rounds", type=int, default=2, help="offline: alternations of ceiling and 1x run.")
    parser.add_argument(
        "--chunk-size", type=int, default=2000, help="offline: chunk size in characters (2000 keeps each text whole)."
    )
    add_generate_arguments(parser)


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """The generate scenario's flags."""
    from service.bench.generate import DEFAULT_MODEL_DIR

    parser.add_argument(
        "--gen-model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="generate: the random GPT-2 (built once)."
    )
    parser.add_argument("--max-tokens", type=int, default=64, help="generate: tokens per request.")
    parser.add_argument("--prompt-words", type=int, default=60, help="generate: words per prompt.")
    parser.add_argument("--baseline-requests", type=int, default=8, help="generate: in-process generate() calls.")
    parser.add_argument(
        "--vs",
        default=None,
        help="generate: another OpenAI-compatible server's URL to compare with, or transformers-serve to spawn one.",
    )
    parser.add_argument("--vs-model", default=None, help="generate: the model name to send --vs (default: its path).")


def _measure_raw(model_id: str, texts: list[str]) -> dict[str, Any]:
    from models.loading import LoadOptions
    from service.bench.raw import measure_raw
    from service.inference.engine import set_torch_threads
    from service.runtime import default_loader, effective_threads

    settings = Settings()
    entry = next((m for m in settings.model_entries() if m.id == model_id), None)
    if entry is None:
        raise SystemExit(f"bench --raw: model {model_id!r} is not in the configured models")
    threads = effective_threads(settings)
    set_torch_threads(threads)
    model = default_loader(entry, LoadOptions(device=settings.device, dtype=settings.dtype))
    return {"torch_threads": threads, **measure_raw(model, texts)}


def _print_table(phases: list[PhaseResult]) -> None:
    head = f"{'conc':>5} {'req/s':>8} {'inputs/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'err':>4} {'batch':>6}"
    print(head)
    for p in phases:
        batch = f"{p.mean_batch_size:.1f}" if p.mean_batch_size is not None else "-"
        print(
            f"{p.concurrency:>5} {p.requests_per_s:>8.1f} {p.inputs_per_s:>9.1f} {p.p50_ms:>8.1f} "
            f"{p.p90_ms:>8.1f} {p.p99_ms:>8.1f} {p.errors:>4} {batch:>6}"
        )


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def _write(out: Path | None, report: dict[str, Any]) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark the flags describe; print a table and optionally write JSON."""
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
    if args.scenario == "process":
        from service.bench.process import run_process_scenario

        limits = tuple(int(x) for x in str(args.limits).split(",") if x.strip())
        result = run_process_scenario(
            headers=headers, chunks=args.chunks, latency_ms=args.remote_latency_ms, limits=limits, repeats=args.repeats
        )
        _write(args.out, {"scenario": "process", "machine": _machine(), **result})
        return 0
    if args.scenario == "stream":
        from service.bench.process import run_stream_scenario

        result = run_stream_scenario(
            headers=headers, chunks=args.chunks, latency_ms=args.remote_latency_ms, repeats=args.repeats
        )
        _write(args.out, {"scenario": "stream", "machine": _machine(), **result})
        return 0
    if args.scenario == "generate":
        from service.bench.generate import run_generate_scenario
        from service.runtime import effective_threads

        levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
        result = run_generate_scenario(
            model_dir=args.gen_model_dir,
            levels=levels,
            requests_per_level=args.requests,
            max_tokens=args.max_tokens,
            prompt_words=args.prompt_words,
            baseline_requests=args.baseline_requests,
            threads=effective_threads(Settings()),
            vs=args.vs,
            vs_model=args.vs_model,
            headers=headers,
        )
        _write(args.out, {"scenario": "generate", "machine": _machine(), **result})
        return 0
    if args.scenario == "offline":
        from service.bench.offline import run_offline_scenario

        result = run_offline_scenario(
            model=args.model,
            corpus=args.corpus,
            size=args.corpus_size,
            scale=args.scale,
            chunk_size=args.chunk_size,
            raw_inputs=args.raw_inputs,
            rounds=args.rounds,
            measure_raw=lambda texts: _measure_raw(args.model, texts),
        )
        _write(args.out, {"scenario": "offline", "machine": _machine(), **result})
        return 0
    levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    texts = load_corpus(args.corpus, args.corpus_size)
    report: dict[str, Any] = {
        "scenario": "embeddings",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "corpus": {"texts": len(texts), "source": str(args.corpus or "built-in")},
        "model": args.model,
    }
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(spawned(["serve"], "/ready"))[0] if args.spawn else args.url
        if args.raw:
            report["raw"] = raw = _measure_raw(args.model, texts[: args.raw_inputs])
            print(
                f"in-process: batch-1 p50 {raw['batch1_p50_ms']} ms; ceiling {raw['ceiling_inputs_per_s']} inputs/s "
                f"(batch {raw['best_arrival_batch_size']}, arrival order); length-sorted "
                f"{raw['best_sorted_inputs_per_s']} inputs/s"
            )
        phases = []
        for level in levels:
            phase = asyncio.run(
                closed_loop(
                    url, args.model, texts, level, requests=args.requests, duration_s=args.duration, headers=headers
                )
            )
            phases.append(phase)
        report["server"] = [p.as_dict() for p in phases]
    _print_table(phases)
    if args.raw:
        best = max(phases, key=lambda p: p.inputs_per_s)
        top = max(phases, key=lambda p: p.concurrency)
        ratios = {
            "server_over_ceiling_at_max_concurrency": round(top.inputs_per_s / raw["ceiling_inputs_per_s"], 3),
            "best_server_over_ceiling": round(best.inputs_per_s / raw["ceiling_inputs_per_s"], 3),
            "server_over_sorted_at_max_concurrency": round(top.inputs_per_s / raw["best_sorted_inputs_per_s"], 3),
        }
        one = next((p for p in phases if p.concurrency == 1), None)
        if one is not None:
            ratios["c1_p50_minus_batch1_ms"] = round(one.p50_ms - raw["batch1_p50_ms"], 2)
        report["ratios"] = ratios
        print("ratios:", json.dumps(ratios))
    _write(args.out, report)
    return 1 if any(p.errors for p in phases) else 0
