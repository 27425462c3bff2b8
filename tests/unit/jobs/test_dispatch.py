"""The dispatch window: every call settles, the job has a deadline, at most ``window`` calls run at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.jobs.chunking import Chunk
from service.jobs.dispatch import INTERNAL_MESSAGE, LATE_MESSAGE, UNSTARTED_MESSAGE, dispatch
from service.jobs.results import ChunkResult


def _work(n: int) -> list[tuple[Chunk, str]]:
    return [(Chunk(i, i, i + 1, "x"), "t") for i in range(n)]


def _label(target: str) -> str:
    return target


async def _ok(chunk: Chunk, target: str) -> ChunkResult:
    await asyncio.sleep(0)
    return ChunkResult(chunk.index, target, True, result=chunk.index)


async def test_a_call_that_raises_anything_settles_as_an_internal_error_and_the_others_finish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def call(chunk: Chunk, target: str) -> ChunkResult:
        if chunk.index == 2:
            raise KeyError("not a ChunkserveError")
        return await _ok(chunk, target)

    results = [r async for r in dispatch(_work(5), call, label=_label, window=2, deadline=time.monotonic() + 30)]
    by_index = {r.index: r for r in results}
    assert sorted(by_index) == [0, 1, 2, 3, 4]
    assert by_index[2].error is not None
    assert (by_index[2].error.type, by_index[2].error.message) == ("internal", INTERNAL_MESSAGE)
    assert all(by_index[i].success for i in (0, 1, 3, 4))
    logged = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback goes to the log, not to the caller


async def test_at_the_deadline_running_calls_are_cancelled_and_unstarted_ones_reported() -> None:
    cancelled: list[int] = []

    async def call(chunk: Chunk, target: str) -> ChunkResult:
        if chunk.index == 0:
            return await _ok(chunk, target)
        try:
            await asyncio.Event().wait()  # never ends on its own
        except asyncio.CancelledError:
            cancelled.append(chunk.index)
            raise
        raise AssertionError("unreachable")

    results = [r async for r in dispatch(_work(5), call, label=_label, window=2, deadline=time.monotonic() + 0.2)]
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert results[0].success
    assert {r.index: r.error.message for r in results[1:] if r.error} == {
        1: LATE_MESSAGE,
        2: LATE_MESSAGE,
        3: UNSTARTED_MESSAGE,
        4: UNSTARTED_MESSAGE,
    }
    assert all(r.error is not None and r.error.type == "timeout" for r in results[1:])
    assert sorted(cancelled) == [1, 2]


async def test_no_more_than_the_window_runs_and_the_next_starts_only_when_a_result_is_taken() -> None:
    running = 0
    most = 0
    started: list[int] = []

    async def call(chunk: Chunk, target: str) -> ChunkResult:
        nonlocal running, most
        started.append(chunk.index)
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)
        running -= 1
        return ChunkResult(chunk.index, target, True)

    results = dispatch(_work(50), call, label=_label, window=4, deadline=time.monotonic() + 30)
    first = await anext(results)
    for _ in range(5):
        await asyncio.sleep(0)  # a consumer that does not read: nothing more may start
    assert len(started) == 4  # the next call starts when the consumer asks for the next result
    rest = [r async for r in results]
    assert most <= 4
    assert len(rest) + 1 == 50 and first.success


async def test_closing_early_cancels_what_runs() -> None:
    gate = asyncio.Event()
    cancelled = 0

    async def call(chunk: Chunk, target: str) -> ChunkResult:
        nonlocal cancelled
        if chunk.index == 0:
            return ChunkResult(0, target, True)
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return ChunkResult(chunk.index, target, True)

    results = dispatch(_work(10), call, label=_label, window=3, deadline=time.monotonic() + 30)
    assert (await anext(results)).index == 0
    await results.aclose()
    assert cancelled == 2  # the window held chunks 0..2; 0 was taken, 1 and 2 were running
    assert {t.get_name() for t in asyncio.all_tasks()} & {f"chunk-{i}" for i in range(10)} == set()
