"""The queue check comes before any per-input work, and tells "never" (413) from "not now" (503)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from models.base import Encoded, Model
from service.batching.batcher import BatchPolicy
from service.errors import InputTooLarge, Overloaded
from service.inference.engine import ModelEngine
from tests.support.waiting import until


class _Counting:
    """Wraps a model: counts encode calls; predict waits on a gate (so the queue fills)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.encoded = 0
        self.gate = threading.Event()

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        self.encoded += len(texts)
        return self.model.encode(texts)

    def predict(self, batch: list[Encoded]) -> list[Any]:
        self.gate.wait(30)
        return self.model.predict(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


async def test_a_request_larger_than_the_queue_is_413_and_a_full_queue_is_503_both_before_tokenizing(
    tiny_embedder: Model,
) -> None:
    model = _Counting(tiny_embedder)
    policy = BatchPolicy(max_batch_size=1, max_wait_s=0.0, max_batch_tokens=4096, max_queue=3, window=4)
    engine = ModelEngine("m", model, policy)  # type: ignore[arg-type]
    await engine.start()
    try:
        with pytest.raises(InputTooLarge) as never:
            await engine.run(["a", "b", "c", "d"])
        assert "at most 3" in never.value.message and "CHUNKSERVE_MAX_QUEUE" in never.value.message
        assert model.encoded == 0

        running = [asyncio.create_task(engine.run(["text 0"]))]
        await until(lambda: model.encoded == 1 and engine.queue_depth == 0)  # the first input is in the model
        running += [asyncio.create_task(engine.run([f"text {i}"])) for i in range(1, 4)]
        await until(lambda: engine.queue_depth == 3)
        before = model.encoded
        with pytest.raises(Overloaded):
            await engine.run(["one more"])
        assert model.encoded == before  # refused before tokenizing
        model.gate.set()
        outputs = await asyncio.gather(*running)
        assert [len(o.results) for o in outputs] == [1, 1, 1, 1]
    finally:
        model.gate.set()
        await engine.close()
