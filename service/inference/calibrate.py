"""A short start-up measurement of what one more model call costs, for the batcher's cost-aware cuts.

Under the cost model "a call costs a fixed overhead plus its padded tokens", two timings of one input of ``length``
tokens, alone and ``size`` times in one call, give both terms; their ratio is the overhead in tokens. On a CPU it is
small (about 25-50 tokens for MiniLM on 2 cores), so splitting a batch where lengths jump pays; on a GPU it is large,
so batches stay full. The cuts are not sensitive to it: a simulation on the benchmark corpus lost under 1% of the
gain with the overhead off by 2x either way.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable

from models.base import Encoded, Model

log = logging.getLogger(__name__)

# Below this the cuts would split batches over a few tokens of length; a small batch costs more per input than a
# linear model says (MiniLM, 2 cores, 64 tokens: 13.7 ms alone against 8.6 ms in 8), so the floor errs towards full.
MIN_OVERHEAD_TOKENS = 16.0
MAX_OVERHEAD_TOKENS = 1_000_000.0  # a GPU's call overhead can be worth this many tokens: batches then stay full
ATTEMPTS = 3


def _seconds(model: Model, batch: list[Encoded], clock: Callable[[], float]) -> float:
    began = clock()
    model.predict(batch)
    return clock() - began


def measure_batch_overhead(
    model: Model,
    *,
    length: int = 128,
    size: int = 4,
    repeats: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> float | None:
    """The fixed cost of one call of ``model``, in tokens of padded input; run it on the model's own thread.

    None when no attempt gave a usable figure (other work on the machine during start-up can make the larger call
    look slower than linear): the batcher then cuts full batches, as it would without this measurement.
    """
    try:
        return _measure(model, length, size, repeats, clock)
    except Exception:  # a model that cannot run the probe still serves: it just gets full batches
        log.warning("batch overhead: the measurement failed; batches are cut full", exc_info=True)
        return None


def _measure(model: Model, length: int, size: int, repeats: int, clock: Callable[[], float]) -> float | None:
    (encoded,) = model.encode([" ".join(["hello"] * length)])
    n = min(length, len(encoded.ids), model.max_input_tokens)
    probe = dataclasses.replace(encoded, ids=list(encoded.ids[:n]), original_length=n)
    if probe.type_ids is not None:
        probe = dataclasses.replace(probe, type_ids=list(probe.type_ids[:n]))
    for _ in range(ATTEMPTS):
        one, many = math.inf, math.inf
        # The first call of each shape is not timed (kernels are picked then); the two shapes alternate so that
        # drift in the machine's speed hits both, and the fastest of each is kept (other work only adds time).
        for round_ in range(repeats + 1):
            t_one, t_many = _seconds(model, [probe], clock), _seconds(model, [probe] * size, clock)
            if round_:
                one, many = min(one, t_one), min(many, t_many)
        per_token = (many - one) / ((size - 1) * n)
        overhead = one - per_token * n
        log.info("batch overhead: one input of %d tokens %.2f ms, %d of them %.2f ms", n, one * 1e3, size, many * 1e3)
        if per_token <= 0:  # the larger call cost no more: only the call itself counts
            return MAX_OVERHEAD_TOKENS
        if overhead > 0:
            return min(max(overhead / per_token, MIN_OVERHEAD_TOKENS), MAX_OVERHEAD_TOKENS)
    log.warning("batch overhead: no usable measurement in %d attempts; batches are cut full", ATTEMPTS)
    return None
