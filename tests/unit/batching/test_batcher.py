"""MicroBatcher behaviour, made deterministic with gates instead of clocks.

A huge ``max_wait_s`` makes batches form by size (or token budget) only; a gated model holds a batch in flight
while a test queues more behind it; the model records every batch it sees, so batch composition is asserted
exactly. No assertion depends on elapsed time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.batching.batcher import BatchPolicy, MicroBatcher, plan_batches
from service.errors import BatchFailed, Overloaded, ShuttingDown
from service.observability.stats import BatchStats

FOREVER = 1000.0  # max_wait_s that never expires within a test: batches form by size only


class Model:
    """A fake model: returns ``item * 2``, records each batch, optionally holds each call until allowed."""

    def __init__(self, *, gated: bool = False, poison: Iterable[int] = (), short_by: int = 0) -> None:
        self.calls: list[list[int]] = []
        self.started: asyncio.Queue[list[int]] = asyncio.Queue()
        self.poison = set(poison)
        self.short_by = short_by
        self._loop = asyncio.get_running_loop()
        self._gated = gated
        self._permits = threading.Semaphore(0)

    def __call__(self, batch: list[int]) -> list[int]:
        self.calls.append(list(batch))
        self._loop.call_soon_threadsafe(self.started.put_nowait, list(batch))
        if self._gated and not self._permits.acquire(timeout=30):
            raise RuntimeError("test gate never opened")
        if bad := self.poison & set(batch):
            raise ValueError(f"poison input {sorted(bad)}")
        results = [x * 2 for x in batch]
        return results[: len(results) - self.short_by]

    def allow(self, n: int = 1) -> None:
        for _ in range(n):
            self._permits.release()

    def computed(self) -> list[int]:
        return [x for batch in self.calls for x in batch]


def make(
    model: Callable[[list[int]], list[int]],
    *,
    cost: Callable[[int], int] = lambda _: 1,
    on_batch: Callable[[BatchStats], None] | None = None,
    **policy: Any,
) -> MicroBatcher[int, int]:
    return MicroBatcher(model, cost=cost, policy=BatchPolicy(**policy), name="test", on_batch=on_batch)


def spawn(batcher: MicroBatcher[int, int], items: Iterable[int]) -> list[asyncio.Task[int]]:
    return [asyncio.create_task(batcher.submit(i)) for i in items]


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition`` holds (bounded in steps, not in time)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def hold_model(batcher: MicroBatcher[int, int], model: Model, plug: int = 0) -> asyncio.Task[int]:
    """Put ``plug`` in the model and wait until the model thread is inside it."""
    task = asyncio.create_task(batcher.submit(plug))
    assert await model.started.get() == [plug]
    return task


# --- policy ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_batch_size", 0),
        ("max_batch_tokens", -1),
        ("max_queue", 0),
        ("window", 0),
        ("retry_after_s", 0.0),
        ("max_wait_s", -0.001),
        ("max_wait_s", float("nan")),
        ("batch_overhead_tokens", 0.0),
        ("batch_overhead_tokens", float("nan")),
        ("batch_overhead_tokens", float("inf")),
    ],
)
def test_policy_refuses_unusable_values_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        BatchPolicy(**dict[str, Any]({field: value}))


def test_policy_refuses_a_window_smaller_than_a_batch() -> None:
    with pytest.raises(ValueError, match=r"window \(4\) must be >= max_batch_size \(8\); raise window"):
        BatchPolicy(max_batch_size=8, window=4)


@given(
    st.lists(st.integers(1, 100), max_size=60),
    st.integers(1, 10),
    st.integers(1, 300),
    st.one_of(st.none(), st.floats(0.5, 10_000)),
)
def test_plan_covers_every_item_once_sorted_and_within_budgets(
    costs: list[int], size: int, tokens: int, overhead: float | None
) -> None:
    batches = plan_batches(costs, size, tokens, overhead)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(costs)))
    assert [costs[i] for i in flat] == sorted(costs)
    for batch in batches:
        assert 1 <= len(batch) <= size
        assert len(batch) == 1 or max(costs[i] for i in batch) * len(batch) <= tokens


def _model_cost(costs: list[int], batches: list[list[int]], overhead: float) -> float:
    return sum(overhead + len(b) * max(costs[i] for i in b) for b in batches)


@given(st.lists(st.integers(1, 300), max_size=60), st.integers(1, 16), st.floats(1, 5_000))
def test_cost_aware_cuts_never_cost_more_than_full_batches(costs: list[int], size: int, overhead: float) -> None:
    full = plan_batches(costs, size, 16384)
    cheapest = plan_batches(costs, size, 16384, overhead)
    assert _model_cost(costs, cheapest, overhead) <= _model_cost(costs, full, overhead) + 1e-6


def test_a_jump_in_length_splits_the_batch_when_a_call_is_cheaper_than_the_padding() -> None:
    costs = [100, 10, 100, 10, 100, 10, 100, 10]
    assert plan_batches(costs, 8, 16384) == [[1, 3, 5, 7, 0, 2, 4, 6]]  # one call padded to 100: 800 tokens
    # Two calls: 2 x 20 + 4 x 10 + 4 x 100 = 480 against 20 + 800 = 820.
    assert plan_batches(costs, 8, 16384, overhead_tokens=20) == [[1, 3, 5, 7], [0, 2, 4, 6]]
    # A call worth more than the 360 padded tokens it would save: one call.
    assert plan_batches(costs, 8, 16384, overhead_tokens=400) == [[1, 3, 5, 7, 0, 2, 4, 6]]


async def test_the_batcher_cuts_where_the_policy_says_it_is_cheapest() -> None:
    model = Model()
    lengths = {1: 10, 2: 100, 3: 10, 4: 100, 5: 10, 6: 100}
    batcher = make(model, cost=lengths.__getitem__, max_batch_size=8, max_wait_s=FOREVER, batch_overhead_tokens=20)
    tasks = spawn(batcher, lengths)
    await until(lambda: batcher.queue_depth == 6)
    await batcher.close()  # drains: the window is cut once, with everything queued
    assert [t.result() for t in tasks] == [2, 4, 6, 8, 10, 12]
    assert model.calls == [[1, 3, 5], [2, 4, 6]]


# --- how batches form ------------------------------------------------------------------------------------------


async def test_batches_form_by_size_when_the_wait_never_expires() -> None:
    model = Model()
    batcher = make(model, max_batch_size=4, max_wait_s=FOREVER)
    assert await asyncio.gather(*spawn(batcher, range(8))) == [x * 2 for x in range(8)]
    assert model.calls == [[0, 1, 2, 3], [4, 5, 6, 7]]
    await batcher.close()


async def test_a_short_batch_waits_for_its_deadline_and_close_drains_it() -> None:
    model = Model()
    batcher = make(model, max_batch_size=4, max_wait_s=FOREVER)
    tasks = spawn(batcher, range(6))
    await asyncio.gather(*tasks[:4])
    await until(lambda: batcher.queue_depth == 2)
    assert model.calls == [[0, 1, 2, 3]]
    assert not tasks[4].done() and not tasks[5].done()
    await batcher.close(drain=True)
    assert [t.result() for t in tasks[4:]] == [8, 10]
    assert model.calls == [[0, 1, 2, 3], [4, 5]]


async def test_a_lone_item_runs_at_its_deadline_without_waiting_for_a_full_batch() -> None:
    model = Model()
    batcher = make(model, max_batch_size=8, max_wait_s=0.005)
    assert await batcher.submit(3) == 6
    assert model.calls == [[3]] and batcher.counts.batches == 1
    await batcher.close()


async def test_a_lone_item_with_zero_wait_runs_at_once_in_a_batch_of_one() -> None:
    model = Model()
    batcher = make(model, max_batch_size=32, max_wait_s=0)
    assert await batcher.submit(21) == 42
    assert model.calls == [[21]]
    assert (batcher.counts.submitted, batcher.counts.completed, batcher.counts.batches) == (1, 1, 1)
    await batcher.close()


async def test_the_token_budget_cuts_batches_and_an_oversized_item_runs_alone() -> None:
    model = Model()
    stats: list[BatchStats] = []
    batcher = make(model, cost=lambda x: x, on_batch=stats.append, max_batch_size=8, max_batch_tokens=40,
                   max_wait_s=FOREVER)  # fmt: skip
    # Padded cost of 10, 11, 12 is 12 x 3 = 36; adding 90 would be 360. 90 alone is over budget: it runs alone.
    assert await asyncio.gather(*spawn(batcher, [90, 10, 11, 12])) == [180, 20, 22, 24]
    assert model.calls == [[10, 11, 12], [90]]
    assert [(s.size, s.tokens, s.real_tokens, s.ok) for s in stats] == [(3, 36, 33, True), (1, 90, 90, True)]
    await batcher.close()


async def test_a_window_is_sorted_by_cost_and_each_caller_gets_its_own_result() -> None:
    model = Model(gated=True)
    batcher = make(model, cost=lambda x: x, max_batch_size=3, max_wait_s=0)
    plug = await hold_model(batcher, model)
    tasks = spawn(batcher, [50, 10, 40, 20, 30, 60])
    await until(lambda: batcher.queue_depth == 6)
    model.allow(3)
    assert [await t for t in tasks] == [100, 20, 80, 40, 60, 120]
    assert await plug == 0
    assert model.calls == [[0], [10, 20, 30], [40, 50, 60]]
    await batcher.close()


async def test_sorting_looks_at_no_more_than_one_window_oldest_first() -> None:
    model = Model(gated=True)
    batcher = make(model, cost=lambda x: x, max_batch_size=3, window=3, max_wait_s=0)
    plug = await hold_model(batcher, model)
    tasks = spawn(batcher, [50, 10, 40, 20, 30, 60])
    await until(lambda: batcher.queue_depth == 6)
    model.allow(3)
    await asyncio.gather(plug, *tasks)
    assert model.calls == [[0], [10, 40, 50], [20, 30, 60]]
    await batcher.close()


async def test_arrivals_while_the_model_is_busy_form_the_next_batch() -> None:
    model = Model(gated=True)
    batcher = make(model, max_batch_size=8, max_wait_s=0)
    plug = await hold_model(batcher, model)
    tasks = spawn(batcher, range(1, 6))
    await until(lambda: batcher.queue_depth == 5)
    model.allow(2)
    assert await asyncio.gather(plug, *tasks) == [0, 2, 4, 6, 8, 10]
    assert model.calls == [[0], [1, 2, 3, 4, 5]]
    await batcher.close()


# --- callers that leave ----------------------------------------------------------------------------------------


async def test_a_cancelled_caller_is_dropped_before_compute() -> None:
    model = Model(gated=True)
    batcher = make(model, max_batch_size=8, max_wait_s=0)
    plug = await hold_model(batcher, model)
    a, b, c = spawn(batcher, [1, 2, 3])
    await until(lambda: batcher.queue_depth == 3)
    b.cancel()
    await until(lambda: batcher.queue_depth == 2)
    model.allow(2)
    assert [await t for t in (plug, a, c)] == [0, 2, 6]
    assert b.cancelled()
    assert model.calls == [[0], [1, 3]]
    assert (batcher.counts.submitted, batcher.counts.completed, batcher.counts.dropped, batcher.counts.failed) == (
        4,
        3,
        1,
        0,
    )
    await batcher.close()


async def test_a_caller_leaving_while_its_batch_waits_its_turn_is_not_computed() -> None:
    model = Model(gated=True)
    batcher = make(model, max_batch_size=2, max_wait_s=0)
    plug = await hold_model(batcher, model)
    tasks = spawn(batcher, [1, 2, 3, 4, 5, 6])
    await until(lambda: batcher.queue_depth == 6)
    model.allow()
    assert await model.started.get() == [1, 2]  # 3 to 6 are planned in the same window, behind this batch
    # [3, 4] is handed to the model thread behind [1, 2]; [5, 6] waits its turn in the batcher.
    await until(lambda: batcher.queue_depth == 2)
    tasks[5].cancel()
    model.allow(3)
    assert await asyncio.gather(plug, *tasks[:5]) == [0, 2, 4, 6, 8, 10]
    assert model.calls == [[0], [1, 2], [3, 4], [5]]
    assert batcher.counts.dropped == 1 and batcher.queue_depth == 0
    await batcher.close()


async def test_the_next_full_batch_reaches_the_model_thread_before_the_running_one_is_answered() -> None:
    model = Model(gated=True)
    stats: list[BatchStats] = []
    batcher = make(model, on_batch=stats.append, max_batch_size=2, max_wait_s=0)
    plug = await hold_model(batcher, model)
    tasks = spawn(batcher, [1, 2, 3, 4, 5])
    await until(lambda: batcher.queue_depth == 5)
    model.allow()
    assert await model.started.get() == [1, 2]
    # While [1, 2] still runs, the full [3, 4] is already the model thread's (it starts without the event loop);
    # the short [5] is not queued behind it: it waits for an idle model, when more inputs may have joined it.
    await until(lambda: batcher.queue_depth == 1)
    assert not tasks[0].done() and model.calls == [[0], [1, 2]]
    model.allow(3)
    assert await asyncio.gather(plug, *tasks) == [0, 2, 4, 6, 8, 10]
    assert model.calls == [[0], [1, 2], [3, 4], [5]]
    assert [s.size for s in stats] == [1, 2, 2, 1] and all(s.ok for s in stats)
    await batcher.close()


# --- errors ----------------------------------------------------------------------------------------------------


async def test_a_poison_input_fails_alone_and_the_batcher_keeps_serving() -> None:
    model = Model(poison=[3])
    stats: list[BatchStats] = []
    batcher = make(model, on_batch=stats.append, max_batch_size=4, max_wait_s=FOREVER)
    results = await asyncio.gather(*spawn(batcher, [1, 2, 3, 4]), return_exceptions=True)
    assert results[:2] == [2, 4] and results[3] == 8
    failure = results[2]
    assert isinstance(failure, BatchFailed) and isinstance(failure.__cause__, ValueError)
    assert "poison input [3]" in str(failure)
    assert model.calls == [[1, 2, 3, 4], [1], [2], [3], [4]]
    assert [s.ok for s in stats] == [False, True, True, False, True]
    assert await batcher.submit_many([5, 6, 7, 8]) == [10, 12, 14, 16]
    assert (batcher.counts.completed, batcher.counts.failed, batcher.counts.batches) == (7, 1, 6)
    assert batcher.alive
    await batcher.close()


async def test_without_single_retries_the_whole_batch_fails() -> None:
    model = Model(poison=[3])
    batcher = make(model, max_batch_size=4, max_wait_s=FOREVER, retry_singly=False)
    results = await asyncio.gather(*spawn(batcher, [1, 2, 3, 4]), return_exceptions=True)
    assert all(isinstance(r, BatchFailed) for r in results)
    assert model.calls == [[1, 2, 3, 4]] and batcher.counts.failed == 4
    await batcher.close()


async def test_a_wrong_number_of_results_fails_every_item_of_the_batch() -> None:
    model = Model(short_by=1)
    batcher = make(model, max_batch_size=4, max_wait_s=FOREVER)
    results = await asyncio.gather(*spawn(batcher, [1, 2, 3, 4]), return_exceptions=True)
    assert all(isinstance(r, BatchFailed) and "returned 3 results for a batch of 4" in str(r) for r in results)
    assert model.calls == [[1, 2, 3, 4]]  # a broken fn is not retried item by item
    assert batcher.alive
    await batcher.close()


async def test_a_raising_on_batch_hook_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    def hook(stats: BatchStats) -> None:
        raise RuntimeError("hook broke")

    batcher = make(Model(), on_batch=hook, max_wait_s=0)
    with caplog.at_level(logging.ERROR, logger="service.batching.batcher"):
        assert await batcher.submit(1) == 2
        assert await batcher.submit(2) == 4
    assert "on_batch hook" in caplog.text and batcher.alive
    await batcher.close()


# --- admission -------------------------------------------------------------------------------------------------


async def test_a_full_queue_refuses_at_once_with_a_retry_hint() -> None:
    model = Model(gated=True)
    batcher = make(model, max_batch_size=1, window=1, max_queue=3, max_wait_s=0, retry_after_s=2.5)
    plug = await hold_model(batcher, model)
    tasks = spawn(batcher, [1, 2, 3])
    await until(lambda: batcher.queue_depth == 3)
    refused = asyncio.create_task(batcher.submit(4))
    await asyncio.sleep(0)  # one step: submit refuses before it ever awaits
    assert refused.done()
    with pytest.raises(Overloaded) as info:
        refused.result()
    assert info.value.retry_after_s == 2.5
    model.allow(4)
    assert await asyncio.gather(plug, *tasks) == [0, 2, 4, 6]
    assert batcher.counts.submitted == 4 and model.computed() == [0, 1, 2, 3]
    await batcher.close()


async def test_submit_many_is_all_or_nothing_and_keeps_order() -> None:
    model = Model(gated=True)
    batcher = make(model, cost=lambda x: x, max_batch_size=8, max_queue=4, max_wait_s=0)
    plug = await hold_model(batcher, model)
    with pytest.raises(Overloaded, match="cannot take 5 more; send fewer items"):
        await batcher.submit_many([1, 2, 3, 4, 5])
    assert (batcher.queue_depth, batcher.counts.submitted) == (0, 1)
    many = asyncio.create_task(batcher.submit_many([30, 10, 20]))
    await until(lambda: batcher.queue_depth == 3)
    with pytest.raises(Overloaded, match="3 of 4 queue places taken and cannot take 2 more"):
        await batcher.submit_many([1, 2])
    model.allow(2)
    assert await many == [60, 20, 40]
    assert await plug == 0
    assert await batcher.submit_many([]) == []
    await batcher.close()


async def test_a_cancelled_submit_many_drops_all_its_queued_items() -> None:
    model = Model(gated=True)
    batcher = make(model, max_batch_size=8, max_wait_s=0)
    plug = await hold_model(batcher, model)
    many = asyncio.create_task(batcher.submit_many([1, 2, 3]))
    await until(lambda: batcher.queue_depth == 3)
    many.cancel()
    await until(lambda: batcher.queue_depth == 0)
    model.allow()
    assert await plug == 0
    await batcher.close()
    assert many.cancelled() and model.calls == [[0]]
    assert (batcher.counts.submitted, batcher.counts.completed, batcher.counts.dropped) == (4, 1, 3)


async def test_submit_many_raises_the_failure_of_its_poison_item_and_computes_the_rest() -> None:
    model = Model(poison=[2])
    batcher = make(model, max_batch_size=4, max_wait_s=FOREVER)
    with pytest.raises(BatchFailed, match="poison input"):
        await batcher.submit_many([1, 2, 3, 4])
    await batcher.close()
    assert (batcher.counts.completed, batcher.counts.failed) == (3, 1)


# --- shutdown and loop death -----------------------------------------------------------------------------------


async def test_close_with_drain_finishes_queued_work_then_refuses_new_work() -> None:
    model = Model()
    batcher = make(model, max_batch_size=4, max_wait_s=FOREVER)
    tasks = spawn(batcher, [1, 2])
    await until(lambda: batcher.queue_depth == 2)
    await batcher.close(drain=True)
    assert [t.result() for t in tasks] == [2, 4]
    assert not batcher.alive
    with pytest.raises(ShuttingDown):
        await batcher.submit(3)
    with pytest.raises(ShuttingDown):
        await batcher.start()
    await batcher.close()  # idempotent


async def test_close_without_drain_fails_queued_work_and_lets_the_running_batch_finish() -> None:
    model = Model(gated=True)
    batcher = make(model, max_batch_size=8, max_wait_s=0)
    plug = await hold_model(batcher, model)
    tasks = spawn(batcher, [1, 2])
    await until(lambda: batcher.queue_depth == 2)
    closing = asyncio.create_task(batcher.close(drain=False))
    await until(lambda: all(t.done() for t in tasks))
    for task in tasks:
        with pytest.raises(ShuttingDown):
            task.result()
    assert not closing.done()  # it waits for the batch in flight
    model.allow()
    await closing
    assert await plug == 0
    assert model.calls == [[0]]
    assert (batcher.counts.completed, batcher.counts.failed, batcher.counts.dropped) == (1, 2, 0)


async def test_close_before_start_and_start_twice_are_harmless() -> None:
    batcher = make(Model(), max_wait_s=0)
    await batcher.start()
    task = batcher.loop_task
    await batcher.start()
    assert batcher.loop_task is task and batcher.alive
    await batcher.close()
    await make(Model()).close()


async def test_a_cancelled_loop_task_fails_pending_callers_and_marks_the_batcher_dead() -> None:
    model = Model(gated=True)
    batcher = make(model, max_batch_size=8, max_wait_s=0)
    plug = await hold_model(batcher, model)
    (queued,) = spawn(batcher, [1])
    await until(lambda: batcher.queue_depth == 1)
    assert batcher.loop_task is not None
    batcher.loop_task.cancel()
    await until(lambda: plug.done() and queued.done())
    for task in (plug, queued):
        with pytest.raises(ShuttingDown, match="stopped"):
            task.result()
    assert not batcher.alive
    with pytest.raises(ShuttingDown, match="stopped"):
        await batcher.submit(2)
    model.allow()
    await batcher.close()
    assert batcher.counts.submitted == batcher.counts.failed == 2


class LoopBug(BaseException):
    """Not an Exception: escapes the per-batch handler, as a bug in the loop itself would."""


async def test_a_loop_that_dies_from_a_bug_fails_its_callers_instead_of_hanging() -> None:
    def broken(batch: list[int]) -> list[int]:
        raise LoopBug("boom")

    batcher = make(broken, max_wait_s=0)
    with pytest.raises(ShuttingDown, match="LoopBug: boom"):
        await batcher.submit(1)
    assert not batcher.alive
    await batcher.close()


# --- everything at once ----------------------------------------------------------------------------------------


async def test_random_concurrent_load_with_cancellations_answers_every_caller_once() -> None:
    rng = random.Random(20261128)
    costs = {i: rng.randint(1, 50) for i in range(500)}
    model = Model()
    stats: list[BatchStats] = []
    batcher = make(model, cost=costs.__getitem__, on_batch=stats.append, max_batch_size=8, max_batch_tokens=200,
                   window=32, max_queue=500, max_wait_s=0.0005)  # fmt: skip
    outcomes: dict[int, int] = {}

    async def client(items: list[int], together: bool) -> None:
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        if together:
            outcomes.update(zip(items, await batcher.submit_many(items), strict=True))
        else:
            for item in items:
                outcomes[item] = await batcher.submit(item)

    chunks = [list(range(i, i + 10)) for i in range(0, 500, 10)]
    clients = [asyncio.create_task(client(chunk, rng.random() < 0.3)) for chunk in chunks]
    for _ in range(rng.randint(5, 40)):
        await asyncio.sleep(0)
        rng.choice(clients).cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    await batcher.close()

    assert all(outcomes[i] == 2 * i for i in outcomes)
    for chunk, task in zip(chunks, clients, strict=True):
        assert task.cancelled() or set(chunk) <= set(outcomes)
    computed = model.computed()
    assert len(computed) == len(set(computed)), "an item was computed twice"
    assert set(outcomes) <= set(computed)
    assert batcher.counts.submitted == batcher.counts.completed + batcher.counts.dropped and batcher.counts.failed == 0
    assert batcher.counts.completed == len(computed) and batcher.queue_depth == 0
    assert sum(s.size for s in stats) == len(computed) and batcher.counts.batches == len(model.calls)
    for batch in model.calls:
        assert len(batch) <= 8 and max(costs[i] for i in batch) * len(batch) <= 200
    assert any(c.cancelled() for c in clients) and batcher.counts.dropped > 0
