"""The in-process baseline of ``chunkserve bench --scenario generate``: transformers' own ``generate()``."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.bench.load import percentile

if TYPE_CHECKING:
    from models.generation import GenerationModel

MODEL_ID = "bench-gpt2"


def load_baseline(model_dir: Path, threads: int) -> GenerationModel:
    """The model in this process, for transformers' own ``generate()`` (torch threads as the server's)."""
    from models.generation import GenerationModel
    from models.loading import LoadOptions, load_local
    from service.inference.engine import set_torch_threads

    set_torch_threads(threads)
    model = load_local(MODEL_ID, model_dir, options=LoadOptions(device="cpu"))
    if not isinstance(model, GenerationModel):
        raise SystemExit(f"bench: {model_dir} is not a generation model")
    return model


def inprocess_ttft_ms(model: GenerationModel, ids: list[int]) -> float:
    """TTFT in-process: one ``generate()`` of a single token (the prefill and the first token's choice)."""
    from models.generation import reference_generate

    started = time.perf_counter()
    reference_generate(model, ids, 1)
    return (time.perf_counter() - started) * 1000


def measure_inprocess(model: GenerationModel, prompts: list[str], max_tokens: int) -> dict[str, Any]:
    """One request at a time through transformers' ``generate()``: TTFT (a 1-token call) and output tokens/s."""
    from models.generation import reference_generate

    ids = [model.encode_prompt(p) for p in prompts]
    reference_generate(model, ids[0], 4)  # warm-up
    ttft = [inprocess_ttft_ms(model, prompt) for prompt in ids]
    tokens, started = 0, time.perf_counter()
    for prompt in ids:
        tokens += len(reference_generate(model, prompt, max_tokens))
    elapsed = time.perf_counter() - started
    ttft.sort()
    return {
        "requests": len(ids),
        "prompt_tokens_mean": round(statistics.mean(len(i) for i in ids), 1),
        "ttft_p50_ms": round(percentile(ttft, 50), 1),
        "ttft_p99_ms": round(percentile(ttft, 99), 1),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / elapsed, 2),
    }
