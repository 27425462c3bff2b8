"""The start-up measurement of a model call's overhead, on a fake model that advances a fake clock.

The fake costs ``overhead + per_token x padded tokens`` seconds per call, so the measured figure is exact arithmetic,
not a timing: the tests assert it to the token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from models.base import Encoded, Task
from service.inference.calibrate import MAX_OVERHEAD_TOKENS, MIN_OVERHEAD_TOKENS, measure_batch_overhead


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CostedModel:
    """An encoder whose calls cost ``overhead_s + per_token_s x longest x size`` on ``clock``."""

    name = "costed"
    task = Task.EMBEDDING
    max_input_tokens = 512
    device = "cpu"
    dtype = "float32"

    def __init__(self, clock: Clock, overhead_s: float, per_token_s: float, *, slow_batches: int = 0) -> None:
        self.clock = clock
        self.overhead_s = overhead_s
        self.per_token_s = per_token_s
        self.slow_batches = slow_batches  # calls of more than one input that take 10x (other work on the machine)
        self.shapes: list[tuple[int, int]] = []

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        return [Encoded(ids=[7] * (len(t.split()) + 2), original_length=len(t.split()) + 2) for t in texts]

    def predict(self, batch: Sequence[Encoded]) -> list[Any]:
        longest = max(e.length for e in batch)
        self.shapes.append((len(batch), longest))
        cost = self.overhead_s + self.per_token_s * longest * len(batch)
        if len(batch) > 1 and self.slow_batches:
            self.slow_batches -= 1
            cost *= 10
        self.clock.now += cost
        return [0.0] * len(batch)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [e.length for e in self.encode(texts)]

    def info(self) -> dict[str, Any]:
        return {"id": "costed"}


def test_the_overhead_is_the_fixed_cost_of_a_call_in_tokens() -> None:
    clock = Clock()
    model = CostedModel(clock, overhead_s=0.005, per_token_s=0.0001)
    assert measure_batch_overhead(model, clock=clock) == pytest.approx(50.0)
    assert set(model.shapes) == {(1, 128), (4, 128)}  # probes of exactly `length` tokens, alone and four together


def test_a_disturbed_attempt_is_measured_again() -> None:
    clock = Clock()
    # The first attempt's larger calls are 10x slow: the fit gives a negative overhead, so it is not trusted.
    model = CostedModel(clock, overhead_s=0.005, per_token_s=0.0001, slow_batches=4)
    assert measure_batch_overhead(model, clock=clock) == pytest.approx(50.0)


def test_no_usable_attempt_means_no_figure() -> None:
    clock = Clock()
    model = CostedModel(clock, overhead_s=0.005, per_token_s=0.0001, slow_batches=1000)
    assert measure_batch_overhead(model, clock=clock) is None


@pytest.mark.parametrize(
    ("overhead_s", "per_token_s", "expected"),
    [
        (0.0001, 0.0001, MIN_OVERHEAD_TOKENS),  # 1 token: floored, so batches are not split over a few tokens
        (0.010, 0.0, MAX_OVERHEAD_TOKENS),  # a call costs the same whatever it holds: keep batches full
    ],
)
def test_the_figure_is_bounded(overhead_s: float, per_token_s: float, expected: float) -> None:
    clock = Clock()
    assert measure_batch_overhead(CostedModel(clock, overhead_s, per_token_s), clock=clock) == expected


def test_a_model_that_cannot_run_the_probe_gets_no_figure() -> None:
    class Broken(CostedModel):
        def predict(self, batch: Sequence[Encoded]) -> list[Any]:
            raise RuntimeError("no")

    assert measure_batch_overhead(Broken(Clock(), 0.005, 0.0001)) is None
