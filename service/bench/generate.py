"""``chunkserve bench --scenario generate``: streamed completions at several concurrencies vs. in-process generate().

The baseline is transformers' ``generate()`` called one request at a time in this process on the same model and
prompts; the server is then spawned with that model and loaded by N streaming clients (closed loop). ``--vs URL``
runs the same load against any other OpenAI-compatible server (for example ``transformers serve``).

TTFT at concurrency 1 is also measured in pairs: one in-process ``generate()`` of one token, then the same prompt
streamed from the server, alternating which goes first. The baseline phase and the server phases run minutes apart,
and on a shared machine the load changes in between (runs measured 1.21x and 0.54x for the same code); a pair sees
the same load, so the paired ratio is the one that says what the server adds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2 as httpx
import orjson

from service.bench.corpus import builtin_corpus
from service.bench.generate_baseline import MODEL_ID, inprocess_ttft_ms, load_baseline, measure_inprocess
from service.bench.load import percentile

if TYPE_CHECKING:
    from models.generation import GenerationModel

DEFAULT_MODEL_DIR = Path.home() / ".cache" / "chunkserve" / "bench-gpt2-124m"


@dataclass
class GenerateLevel:
    """One concurrency level: latency percentiles and throughput of output tokens."""

    concurrency: int
    requests: int
    errors: int
    duration_s: float
    output_tokens: int
    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    prompt_tokens_mean: float = 0.0  # as the server counted them: the same prompts as the baseline's
    error_samples: list[str] = field(default_factory=list)


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """The generate scenario's own flags (it also reads --concurrency, --requests, --vs and --out)."""
    parser.add_argument(
        "--gen-model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="generate: the random GPT-2 (built once)."
    )
    parser.add_argument("--max-tokens", type=int, default=64, help="generate: tokens per request.")
    parser.add_argument("--prompt-words", type=int, default=60, help="generate: words per prompt.")
    parser.add_argument("--baseline-requests", type=int, default=8, help="generate: in-process generate() calls.")
    parser.add_argument("--vs-model", default=None, help="generate: the model name to send --vs (default: its path).")


def run_generate_command(args: argparse.Namespace) -> int:
    """``chunkserve bench --scenario generate``: run, print, and write the JSON to ``--out`` (a file or folder)."""
    from service.config import Settings
    from service.runtime import effective_threads

    concurrency = args.concurrency
    levels = [int(c) for c in str(concurrency).split(",") if c.strip()] if isinstance(concurrency, str) else concurrency
    headers = {"Authorization": f"Bearer {args.api_key}"} if getattr(args, "api_key", None) else None
    result = run_generate_scenario(
        model_dir=args.gen_model_dir,
        levels=list(levels),
        requests_per_level=args.requests,
        max_tokens=args.max_tokens,
        prompt_words=args.prompt_words,
        baseline_requests=args.baseline_requests,
        threads=effective_threads(Settings()),
        vs=args.vs[0] if args.vs else None,
        vs_model=args.vs_model,
        headers=headers,
    )
    if args.out is not None:
        out = Path(args.out)
        path = out if out.suffix == ".json" else out / "generate.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"scenario": "generate", **result}, indent=2) + "\n")
        print(f"wrote {path}")
    return 1 if any(level["errors"] for level in result["server"]) else 0


def bench_prompts(n: int, words: int, seed: int = 99) -> list[str]:
    """``n`` prompts of exactly ``words`` words each (one token each for the benchmark GPT-2's word vocabulary).

    The corpus's Chinese texts are left out: their words are not space-separated, so one of them made a prompt of
    5 to 11 tokens instead of ``words``, and TTFT mixed two prompt lengths.
    """
    texts = builtin_corpus(max(n, 8) * 4, seed=seed, min_words=words, max_words=words * 2)
    found = [re.findall(r"\w+", text) for text in texts if text.isascii()]
    return [" ".join(w[:words]) for w in found if len(w) >= words][:n]


def prepare_model(model_dir: Path) -> Path:
    """The random-weight GPT-2 small in ``model_dir``, built and saved on the first run."""
    from models.random_lm import save_random_gpt2

    words = re.findall(r"\w+", " ".join(builtin_corpus(500)))
    return save_random_gpt2(model_dir, words)


async def _one(
    client: httpx.AsyncClient,
    model: str,
    prompt: str,
    max_tokens: int,
    ttft: list[float],
    gaps: list[float],
    prompt_tokens: list[int] | None = None,
) -> int:
    """Stream one completion; record its TTFT, token gaps and prompt tokens; return its output tokens."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    last: float | None = None
    tokens = pieces = 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = orjson.loads(line[6:])
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
                if prompt_tokens is not None:
                    prompt_tokens.append(int(chunk["usage"]["prompt_tokens"]))
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                pieces += 1
                now = time.perf_counter()
                if last is None:
                    ttft.append((now - started) * 1000)
                else:
                    gaps.append((now - last) * 1000)
                last = now
    # A server that sends no usage: count its text chunks (one token each for chunkserve and transformers serve).
    return tokens or pieces


async def closed_loop_generate(
    url: str,
    model: str,
    prompts: list[str],
    concurrency: int,
    requests: int,
    max_tokens: int,
    headers: Mapping[str, str] | None = None,
) -> GenerateLevel:
    """``concurrency`` streaming clients sending ``requests`` completions in all, each as soon as its last ended."""
    ttft: list[float] = []
    gaps: list[float] = []
    errors: list[str] = []
    prompt_tokens: list[int] = []
    counter = iter(range(requests))
    tokens = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits, headers=headers, trust_env=False) as client:

        async def worker() -> None:
            nonlocal tokens
            for i in counter:
                try:
                    # Not ``tokens += await ...``: that reads ``tokens`` before the await and loses the others' counts.
                    prompt = prompts[i % len(prompts)]
                    written = await _one(client, model, prompt, max_tokens, ttft, gaps, prompt_tokens)
                    tokens += written
                except (httpx.HTTPError, RuntimeError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ttft.sort()
    gaps.sort()
    return GenerateLevel(
        concurrency=concurrency,
        requests=requests,
        errors=len(errors),
        duration_s=round(elapsed, 2),
        output_tokens=tokens,
        output_tokens_per_s=round(tokens / elapsed, 2),
        ttft_p50_ms=round(percentile(ttft, 50), 1),
        ttft_p99_ms=round(percentile(ttft, 99), 1),
        itl_p50_ms=round(percentile(gaps, 50), 1),
        itl_p99_ms=round(percentile(gaps, 99), 1),
        prompt_tokens_mean=round(statistics.mean(prompt_tokens), 1) if prompt_tokens else 0.0,
        error_samples=errors[:3],
    )


async def paired_ttft(
    url: str, model: GenerationModel, prompts: list[str], max_tokens: int, rounds: int
) -> dict[str, Any]:
    """TTFT at concurrency 1 in pairs: in-process ``generate()`` and the server on the same prompt, back to back.

    The order alternates (in-process first, then the server first), so a load that rises or falls through the run
    weighs on both sides alike. The server's request is the concurrency-1 level's own (streamed, ``max_tokens``).
    """
    local: list[float] = []
    served: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=600, trust_env=False) as client:
        for i in range(rounds + 1):  # the first pair warms both sides' path for this prompt length
            prompt = prompts[i % len(prompts)]
            ids = model.encode_prompt(prompt)
            pair: list[float] = []
            server_first = i % 2 == 0
            if server_first:
                await _one(client, MODEL_ID, prompt, max_tokens, pair, [])
            local_ms = inprocess_ttft_ms(model, ids)
            if not server_first:
                await _one(client, MODEL_ID, prompt, max_tokens, pair, [])
            if i and pair:
                local.append(local_ms)
                served.append(pair[0])
    ratios = sorted(s / b for s, b in zip(served, local, strict=True))
    return {
        "rounds": len(ratios),
        "inprocess_ttft_p50_ms": round(percentile(sorted(local), 50), 1),
        "server_ttft_p50_ms": round(percentile(sorted(served), 50), 1),
        "pair_ratio_p50": round(percentile(ratios, 50), 3) if ratios else 0.0,
    }


@contextlib.contextmanager
def transformers_serve(model_dir: Path, threads: int, timeout_s: float = 300.0) -> Iterator[str]:
    """``transformers serve MODEL_DIR`` on a free loopback port until the block ends; yields its URL."""
    from service.bench.procs import free_port, running

    port = free_port()
    cmd = ["transformers", "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    with running(
        cmd,
        f"http://127.0.0.1:{port}",
        "/health",
        env=env,
        timeout_s=timeout_s,
        name="transformers serve",
        stdout=subprocess.DEVNULL,
        poll_s=0.5,
    ) as (url, _):
        yield url


def run_generate_scenario(
    *,
    model_dir: Path,
    levels: list[int],
    requests_per_level: int,
    max_tokens: int,
    prompt_words: int,
    baseline_requests: int,
    threads: int,
    vs: str | None,
    vs_model: str | None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Baseline in-process, then the spawned server, then ``vs`` (when given): one report with the ratios."""
    from service.bench.procs import spawned

    path = prepare_model(model_dir)
    prompts = bench_prompts(max(requests_per_level, baseline_requests), prompt_words)
    print(f"model: random GPT-2 small (124M) in {path}; {max_tokens} tokens per request, greedy")
    model = load_baseline(path, threads)
    baseline = measure_inprocess(model, prompts[:baseline_requests], max_tokens)
    print(f"in-process generate(): {baseline}")
    report: dict[str, Any] = {"model_dir": str(path), "max_tokens": max_tokens, "baseline": baseline}
    env = {"CHUNKSERVE_MODELS": f"{MODEL_ID}={path}:generation", "CHUNKSERVE_TORCH_THREADS": str(threads)}
    with spawned(["serve"], "/ready", env=env) as (url, _):
        report["server"] = [
            asdict(asyncio.run(closed_loop_generate(url, MODEL_ID, prompts, c, max(c, requests_per_level), max_tokens)))
            for c in levels
        ]
        if 1 in levels:
            report["ttft_c1_paired"] = asyncio.run(paired_ttft(url, model, prompts, max_tokens, baseline_requests))
            print(f"TTFT at concurrency 1, paired with in-process generate(): {report['ttft_c1_paired']}")
    del model  # its memory, before another server is started
    for level in report["server"]:
        print(f"chunkserve c={level['concurrency']}: {level}")
    if vs:
        with contextlib.ExitStack() as stack:
            other = stack.enter_context(transformers_serve(path, threads)) if vs == "transformers-serve" else vs
            name = vs_model or str(path)
            report["vs"] = {"url": vs, "levels": []}
            # Without continuous batching another server may take c times longer at concurrency c: stop at 8.
            for c in [c for c in levels if c <= 8]:
                level = closed_loop_generate(other, name, prompts, c, max(c, requests_per_level), max_tokens, headers)
                report["vs"]["levels"].append(asdict(asyncio.run(level)))
                print(f"{vs} c={c}: {report['vs']['levels'][-1]}")
    by_c = {level["concurrency"]: level for level in report["server"]}
    ratios: dict[str, float] = {}
    for c, level in by_c.items():
        ratios[f"tokens_per_s_c{c}_over_inprocess"] = round(
            level["output_tokens_per_s"] / baseline["output_tokens_per_s"], 2
        )
    if 1 in by_c:
        ratios["ttft_p50_c1_over_inprocess"] = round(by_c[1]["ttft_p50_ms"] / baseline["ttft_p50_ms"], 3)
        paired = report["ttft_c1_paired"]
        if paired["inprocess_ttft_p50_ms"]:
            ratios["ttft_p50_c1_paired_over_inprocess"] = round(
                paired["server_ttft_p50_ms"] / paired["inprocess_ttft_p50_ms"], 3
            )
    if vs:
        for level in report["vs"]["levels"]:
            c = level["concurrency"]
            if c in by_c and level["output_tokens_per_s"]:
                ratios[f"tokens_per_s_c{c}_over_vs"] = round(
                    by_c[c]["output_tokens_per_s"] / level["output_tokens_per_s"], 2
                )
    report["ratios"] = ratios
    print("ratios:", ratios)
    return report
