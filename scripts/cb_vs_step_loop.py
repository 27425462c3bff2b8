"""Which decoding loop to serve with: transformers' continuous-batching manager or chunkserve's own step loop?

Decodes the same N prompts (M tokens each, greedy) three ways on one model, in this process, on the CPU:
transformers' ``generate_batch`` (its continuous-batching manager, paged attention), chunkserve's ``DecodeBatch``
(left-padded ``DynamicCache``; all prompts joined at once), and ``generate()`` one prompt at a time.

    python scripts/cb_vs_step_loop.py ~/.cache/chunkserve/bench-gpt2-124m --prompts 8 --tokens 32 \
        --out bench/results/generation_loops.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from pathlib import Path

import torch
from transformers import GenerationConfig

from models.base import Sampling
from models.generation import DecodeBatch, GenerationModel, Row, reference_generate
from models.loading import LoadOptions, load_local
from service.bench.corpus import builtin_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--words", type=int, default=60)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip-single", action="store_true", help="Leave out generate() one prompt at a time.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_local("bench", args.model_dir, options=LoadOptions(device="cpu"))
    assert isinstance(model, GenerationModel)
    texts = builtin_corpus(args.prompts * 4, seed=99, min_words=args.words, max_words=args.words * 2)
    ids = [model.encode_prompt(" ".join(re.findall(r"\w+", t)[: args.words])) for t in texts[: args.prompts]]
    total = args.prompts * args.tokens
    results: dict[str, float] = {}

    warm = DecodeBatch(model)  # first use of these shapes outside the timing (generate_batch warms up too)
    warm.add([Row(key=i, prompt=p, sampling=Sampling(max_tokens=2)) for i, p in enumerate(ids)])
    warm.step()
    started = time.perf_counter()
    batch = DecodeBatch(model)
    batch.add([Row(key=i, prompt=p, sampling=Sampling(max_tokens=args.tokens)) for i, p in enumerate(ids)])
    for _ in range(args.tokens - 1):
        batch.step()
    results["step_loop_tokens_per_s"] = round(total / (time.perf_counter() - started), 2)
    print(f"chunkserve step loop: {results['step_loop_tokens_per_s']} tokens/s", flush=True)

    config = GenerationConfig(max_new_tokens=args.tokens, do_sample=False, eos_token_id=-1)  # type: ignore[no-untyped-call]
    started = time.perf_counter()
    model.module.generate_batch(ids, generation_config=config, progress_bar=False)  # type: ignore[operator]
    results["transformers_continuous_batching_tokens_per_s"] = round(total / (time.perf_counter() - started), 2)
    print(f"transformers CB: {results['transformers_continuous_batching_tokens_per_s']} tokens/s", flush=True)

    if args.skip_single:
        return _report(args, ids, results)
    started = time.perf_counter()
    made = sum(len(reference_generate(model, p, args.tokens)) for p in ids)
    results["one_at_a_time_tokens_per_s"] = round(made / (time.perf_counter() - started), 2)
    print(f"generate() one at a time: {results['one_at_a_time_tokens_per_s']} tokens/s", flush=True)
    _report(args, ids, results)


def _report(args: argparse.Namespace, ids: list[list[int]], results: dict[str, float]) -> None:
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": args.threads},
        "prompts": args.prompts,
        "tokens_per_prompt": args.tokens,
        "prompt_tokens_mean": round(sum(map(len, ids)) / len(ids), 1),
        **results,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
