"""Start-up wiring: every torch call of a model (load, warm-up, each batch) happens on that model's one thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from models.base import Encoded, Model
from models.loading import LoadOptions
from service.config import Settings
from service.inference.machine import Machine
from service.inference.model_entry import ModelEntry
from service.inference.registry import ModelRegistry, Phase
from service.observability.metrics import Metrics
from service.runtime import batch_policy, default_loader, effective_threads, load_engines


async def test_load_warm_up_and_batches_share_one_model_thread(tiny_bert_dir: Path) -> None:
    seen: dict[str, set[str]] = {"load": set(), "predict": set()}

    def loader(entry: ModelEntry, options: LoadOptions) -> Model:
        seen["load"].add(threading.current_thread().name)
        model = default_loader(entry, options)  # warms up in this same thread
        real_predict = model.predict

        def predict(batch: Sequence[Encoded]) -> list[Any]:
            seen["predict"].add(threading.current_thread().name)
            return real_predict(batch)

        model.predict = predict  # type: ignore[method-assign]
        return model

    settings = Settings(models=[ModelEntry(id="tiny", path=tiny_bert_dir)], device="cpu", torch_threads=1)
    registry = ModelRegistry(expected=["tiny"])
    await load_engines(settings, registry, loader, Metrics())
    try:
        assert registry.phase is Phase.READY
        output = await registry.engines["tiny"].run(["one text", "and another"])
        assert len(output.results) == 2
    finally:
        await registry.close(drain=True)
    assert len(seen["load"]) == 1
    assert seen["predict"] == seen["load"]
    assert next(iter(seen["load"])).startswith("model-tiny")
    assert threading.current_thread().name not in seen["load"]


def counting_loader(sizes: list[int]) -> Callable[[ModelEntry, LoadOptions], Model]:
    """The default loader, with every predict call's batch size appended to ``sizes``."""

    def loader(entry: ModelEntry, options: LoadOptions) -> Model:
        model = default_loader(entry, options)
        real_predict = model.predict

        def predict(batch: Sequence[Encoded]) -> list[Any]:
            sizes.append(len(batch))
            return real_predict(batch)

        model.predict = predict  # type: ignore[method-assign]
        return model

    return loader


@pytest.mark.parametrize("setting", [None, 250.0])
async def test_the_call_overhead_is_measured_at_start_up_unless_set(tiny_bert_dir: Path, setting: float | None) -> None:
    sizes: list[int] = []
    settings = Settings(
        models=[ModelEntry(id="tiny", path=tiny_bert_dir)], device="cpu", torch_threads=1, batch_overhead_tokens=setting
    )
    registry = ModelRegistry(expected=["tiny"])
    await load_engines(settings, registry, counting_loader(sizes), Metrics())
    try:
        policy = registry.engines["tiny"].batcher.policy
        if setting is None:
            assert 4 in sizes  # the probe: one input alone, then four together
        else:
            assert 4 not in sizes and policy.batch_overhead_tokens == setting
    finally:
        await registry.close(drain=True)


SMALL = Machine(cores=2, avx512=True, amx=True)


def test_an_unset_batch_size_is_chosen_for_the_device() -> None:
    assert batch_policy(Settings(), "cpu", SMALL).max_batch_size == 8
    assert batch_policy(Settings(), "cpu", Machine(cores=16)).max_batch_size == 16
    assert batch_policy(Settings(), "cuda:0", SMALL).max_batch_size == 64
    assert batch_policy(Settings(batch_window=48), "cuda:0", SMALL).max_batch_size == 48
    assert batch_policy(Settings(max_batch_size=24), "cpu", SMALL).max_batch_size == 24
    assert batch_policy(Settings(max_batch_size=24), "cuda:0", SMALL).max_batch_size == 24


def test_an_unset_wait_is_chosen_for_the_device() -> None:
    assert batch_policy(Settings(), "cpu", SMALL).max_wait_s == 0.0
    assert batch_policy(Settings(), "cuda:0", SMALL).max_wait_s == 0.002
    assert batch_policy(Settings(max_wait_ms=5), "cpu", SMALL).max_wait_s == 0.005


def test_unset_torch_threads_follow_the_machine() -> None:
    assert effective_threads(Settings(), Machine(cores=2)) == 2
    assert effective_threads(Settings(), Machine(cores=32)) == 4
    assert effective_threads(Settings(torch_threads=3), Machine(cores=32)) == 3
