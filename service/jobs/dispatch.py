"""A job's calls through a bounded window, each one settled whatever it raises, the whole job under a deadline.

At most ``window`` calls of one job run at once, and the next starts only when its consumer has taken a result:
memory per job is bounded by settings, not by the request, and a slow reader (an SSE stream, a WebSocket) slows
dispatch down instead of piling results up. Results come out in completion order.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

from service.jobs.chunking import Chunk
from service.jobs.results import ChunkResult, failed
from service.observability.trace import current_trace

log = logging.getLogger("chunkserve.jobs")

T = TypeVar("T")
Call = Callable[[Chunk, T], Awaitable[ChunkResult]]

INTERNAL_MESSAGE = "the chunk failed unexpectedly; the server log has the details"
LATE_MESSAGE = "the chunk did not finish before the job's deadline"
UNSTARTED_MESSAGE = "the chunk was not started before the job's deadline"


async def dispatch(
    work: Sequence[tuple[Chunk, T]],
    call: Call[T],
    *,
    label: Callable[[T], str],
    window: int,
    deadline: float,
) -> AsyncGenerator[ChunkResult, None]:
    """Yield one result per (chunk, target) of ``work``, in completion order.

    ``deadline`` is a ``time.monotonic()`` instant: whatever has not finished by then is cancelled and reported
    as ``timeout``. Closing the generator early cancels what is running.
    """
    loop = asyncio.get_running_loop()
    at = loop.time() + (deadline - time.monotonic())
    todo: Iterator[tuple[Chunk, T]] = iter(work)
    running: dict[asyncio.Task[ChunkResult], tuple[Chunk, T]] = {}
    # None in the queue: the deadline passed. One timer per job, not one ``asyncio.timeout`` per result.
    finished: asyncio.Queue[asyncio.Task[ChunkResult] | None] = asyncio.Queue()
    timer = loop.call_at(at, finished.put_nowait, None)

    def launch(n: int) -> None:
        for chunk, target in itertools.islice(todo, n):
            task = asyncio.create_task(_settled(call, chunk, target, label), name=f"chunk-{chunk.index}")
            running[task] = (chunk, target)
            task.add_done_callback(finished.put_nowait)

    launch(max(1, window))
    try:
        while running:
            task = await finished.get()
            if task is None:
                break
            pair = running.pop(task, None)
            if pair is None:
                continue
            yield _outcome(task, *pair, label)
            launch(1)  # only now: the consumer has taken a result, so a slow one holds dispatch back
        if not running:
            return
        late = dict(running)
        running.clear()
        for task in late:
            task.cancel()
        await asyncio.wait(late)
        for task, (chunk, target) in late.items():
            yield _outcome(task, chunk, target, label)
        now = time.perf_counter()
        for chunk, target in todo:
            yield failed(chunk.index, label(target), now, "timeout", UNSTARTED_MESSAGE, attempts=0)
    finally:
        timer.cancel()
        for task in running:
            task.cancel()
        if running:
            # asyncio.wait, not gather: if this waiter is cancelled again (anyio cancel scopes re-deliver),
            # gather would cancel the tasks a second time mid-cleanup and httpx would leak the sockets.
            await asyncio.wait(running)


async def _settled(call: Call[T], chunk: Chunk, target: T, label: Callable[[T], str]) -> ChunkResult:
    start = time.perf_counter()
    try:
        return await call(chunk, target)
    except Exception:
        # Every chunk settles: one that escaped its call's error mapping is a bug to log, never a hung job.
        trace = current_trace.get()
        request_id = trace.request_id if trace is not None else None
        log.exception("chunk %d at %s failed unexpectedly (request %s)", chunk.index, label(target), request_id)
        return failed(chunk.index, label(target), start, "internal", INTERNAL_MESSAGE)


def _outcome(task: asyncio.Task[ChunkResult], chunk: Chunk, target: T, label: Callable[[T], str]) -> ChunkResult:
    if task.cancelled():
        return failed(chunk.index, label(target), time.perf_counter(), "timeout", LATE_MESSAGE)
    error = task.exception()
    if error is not None:  # a BaseException that is not a cancellation (_settled caught every Exception)
        return failed(chunk.index, label(target), time.perf_counter(), "internal", INTERNAL_MESSAGE)
    return task.result()
