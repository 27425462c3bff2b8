"""MicroBatcher: turns concurrent one-item calls into batched calls of a model on its own thread.

Asyncio only (see "The MicroBatcher contract" in ARCHITECTURE.md). One loop task owns the queue: it blocks for
the first item, waits until that item's deadline (arrival + ``max_wait_s``) unless the queue already fills a batch,
then takes a window of up to ``window`` queued items (oldest first), sorts them by cost, cuts them into batches
within ``max_batch_size`` and ``max_batch_tokens`` (padded: longest x n) and runs those one after another.
A trailing batch that is not full and whose oldest item is still inside its deadline goes back to the queue head.
Each caller owns its future; results are matched to requests by identity, never by position in the sorted order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from service.batch_policy import BatchPolicy, BatchStats, plan_batches
from service.errors import BatchFailed, Overloaded, ShuttingDown
from service.trace import RequestTrace, current_trace

__all__ = ["BatchPolicy", "BatchStats", "MicroBatcher", "plan_batches"]

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

_QUEUED, _RUNNING, _FINISHED = 0, 1, 2


@dataclass(eq=False, slots=True)
class _Request(Generic[T, R]):
    item: T
    cost: int
    future: asyncio.Future[R]
    arrival: float
    state: int = _QUEUED
    trace: RequestTrace | None = None


class _ResultMismatch(Exception):
    """``fn`` returned a different number of results than it was given inputs."""


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class MicroBatcher(Generic[T, R]):
    """Batches concurrent ``submit`` calls into calls of ``fn`` on one worker thread."""

    def __init__(
        self,
        fn: Callable[[list[T]], list[R]],
        *,
        cost: Callable[[T], int],
        policy: BatchPolicy,
        name: str = "batcher",
        executor: concurrent.futures.Executor | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self.policy = policy
        self.name = name
        self._fn = fn
        self._cost = cost
        self._on_batch = on_batch
        self._executor = executor
        self._owns_executor = executor is None
        self._queue: deque[_Request[T, R]] = deque()
        # Queued or running requests: what must be failed if the loop dies or close(drain=False) is called.
        self._pending: set[_Request[T, R]] = set()
        self._waiting = 0
        self._queued_max_cost = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stopped: str | None = None
        self._submitted = self._completed = self._failed = self._dropped = self._batches = 0

    @property
    def alive(self) -> bool:
        """Whether the loop task is running (False before start, after close, and once it has died)."""
        return self._task is not None and not self._task.done()

    @property
    def loop_task(self) -> asyncio.Task[None] | None:
        """The loop task, once started."""
        return self._task

    @property
    def queue_depth(self) -> int:
        """Accepted items not yet handed to the model (the running batch is not counted)."""
        return self._waiting

    @property
    def submitted(self) -> int:
        """Items accepted."""
        return self._submitted

    @property
    def completed(self) -> int:
        """Items the model computed a result for (whether or not the caller still waited)."""
        return self._completed

    @property
    def failed(self) -> int:
        """Items answered with an error (model error, result mismatch, shut down, loop death)."""
        return self._failed

    @property
    def dropped(self) -> int:
        """Items whose caller left before they reached the model; never computed."""
        return self._dropped

    @property
    def batches(self) -> int:
        """Calls of ``fn`` made (single retries included)."""
        return self._batches

    async def start(self) -> None:
        """Start the loop task on the running event loop; idempotent (``submit`` also starts it).

        Raises:
            ShuttingDown: the batcher was closed or its loop has died.
        """
        self._check_open()
        self._ensure_started()

    async def submit(self, item: T) -> R:
        """Queue one item and return its own result.

        Raises:
            Overloaded: the queue is at ``max_queue`` (carries ``retry_after_s``).
            ShuttingDown: the batcher is closing or its loop has died.
            BatchFailed: the model raised for this item, or returned a wrong number of results.
        """
        (request,) = self._admit((item,))
        try:
            return await request.future
        except asyncio.CancelledError:
            self._abandon(request)
            raise

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Queue all items or none, and return their results in order.

        If one fails, its error is raised as soon as every earlier item has finished; the other items are not
        cancelled (they may share batches with other callers) and their outcomes are discarded. If the caller
        is cancelled, every item not yet computed is dropped.

        Raises:
            Overloaded: the items do not all fit in the queue now; none was queued.
            ShuttingDown: the batcher is closing or its loop has died.
            BatchFailed: the model raised for one of the items (the first such in input order is raised).
        """
        if not items:
            return []
        requests = self._admit(items)
        results: list[R] = []
        try:
            for request in requests:
                results.append(await request.future)
        except asyncio.CancelledError:
            for request in requests:
                self._abandon(request)
            raise
        except BaseException:
            for request in requests:
                request.future.add_done_callback(_retrieve)
            raise
        return results

    async def close(self, drain: bool = True) -> None:
        """Stop intake; finish (drain) or fail with ShuttingDown what is queued; await the loop; idempotent."""
        self._closing = True
        if not drain:
            for request in [r for r in self._pending if r.state == _QUEUED]:
                self._reject(request, ShuttingDown(f"batcher {self.name!r} closed before this input was computed"))
        self._wakeup.set()
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task])
        if self._owns_executor and self._executor is not None:
            # No wait: after a loop death the thread may still be inside fn, and the event loop must not block.
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _check_open(self) -> None:
        if self._closing:
            raise ShuttingDown(f"batcher {self.name!r} is closing and takes no new work")
        if self._stopped is not None:
            raise ShuttingDown(f"batcher {self.name!r} has stopped: {self._stopped}")

    def _ensure_started(self) -> None:
        if self._task is not None:
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"{self.name}-loop")
        self._task.add_done_callback(self._on_loop_exit)

    def _admit(self, items: Sequence[T]) -> list[_Request[T, R]]:
        self._check_open()
        n, limit = len(items), self.policy.max_queue
        if self._waiting + n > limit:
            hint = "send fewer items per request or raise max_queue" if n > limit else "retry later"
            raise Overloaded(
                f"batcher {self.name!r} has {self._waiting} of {limit} queue places taken and cannot take {n} more; "
                f"{hint}",
                retry_after_s=self.policy.retry_after_s,
            )
        costs = [self._cost(item) for item in items]
        self._ensure_started()
        loop = asyncio.get_running_loop()
        now = loop.time()
        was_empty = not self._queue
        trace = current_trace.get()
        if trace is not None:
            trace.inputs += n
        requests = [
            _Request(item, c, loop.create_future(), now, trace=trace) for item, c in zip(items, costs, strict=True)
        ]
        self._queue.extend(requests)
        self._pending.update(requests)
        self._waiting += n
        self._submitted += n
        self._queued_max_cost = max(self._queued_max_cost, *costs)
        # The loop only needs waking when it may be blocked for a first item or for a batch to fill.
        if was_empty or self._fills():
            self._wakeup.set()
        return requests

    def _fills(self) -> bool:
        n = self._waiting
        return n >= self.policy.max_batch_size or n * self._queued_max_cost >= self.policy.max_batch_tokens

    def _is_live(self, request: _Request[T, R]) -> bool:
        if request.state != _QUEUED:
            return False
        if request.future.done():  # the caller left and its cancellation handler has not run yet
            self._drop(request)
            return False
        return True

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._queue and not self._is_live(self._queue[0]):
                self._queue.popleft()
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            deadline = self._queue[0].arrival + self.policy.max_wait_s
            while not (self._closing or self._fills()) and loop.time() < deadline:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout_at(deadline):
                        await self._wakeup.wait()
                except TimeoutError:
                    break
            for batch in self._take_window(loop.time()):
                await self._run_batch(batch, loop)

    def _take_window(self, now: float) -> list[list[_Request[T, R]]]:
        policy = self.policy
        window: list[_Request[T, R]] = []
        while self._queue and len(window) < policy.window:
            request = self._queue.popleft()
            if self._is_live(request):
                window.append(request)
        cuts = plan_batches([r.cost for r in window], policy.max_batch_size, policy.max_batch_tokens)
        batches = [[window[i] for i in cut] for cut in cuts]
        if batches and not self._closing:
            last = batches[-1]
            longest = max(r.cost for r in last)
            full = len(last) >= policy.max_batch_size or longest * (len(last) + 1) > policy.max_batch_tokens
            if not full and now < min(r.arrival for r in last) + policy.max_wait_s:
                # Still inside its deadline: let later arrivals fill it instead of running it short.
                batches.pop()
                held = set(last)
                self._queue.extendleft(reversed([r for r in window if r in held]))
        self._queued_max_cost = max((r.cost for r in self._queue), default=0)
        return batches

    async def _run_batch(self, batch: list[_Request[T, R]], loop: asyncio.AbstractEventLoop) -> None:
        live = [r for r in batch if self._is_live(r)]  # callers may have left while this batch waited its turn
        if not live:
            return
        for request in live:
            request.state = _RUNNING
        self._waiting -= len(live)
        error = await self._compute(live, loop)
        if error is None:
            return
        if not (self.policy.retry_singly and len(live) > 1) or isinstance(error, _ResultMismatch):
            for request in live:
                self._reject(request, self._failure(error))
            return
        for request in live:
            single = error if request.future.done() else await self._compute([request], loop)
            if single is not None:
                self._reject(request, self._failure(single))

    async def _compute(self, requests: list[_Request[T, R]], loop: asyncio.AbstractEventLoop) -> Exception | None:
        """Run ``fn`` once; resolve every request on success, else return the error and leave them pending."""
        started = loop.time()
        error: Exception | None = None
        try:
            results = await loop.run_in_executor(self._executor, self._fn, [r.item for r in requests])
            if len(results) != len(requests):
                raise _ResultMismatch(
                    f"the model returned {len(results)} results for a batch of {len(requests)} inputs; "
                    "fn must return exactly one result per input"
                )
        except Exception as exc:
            error = exc
        else:
            for request, value in zip(requests, results, strict=True):
                self._resolve(request, value)
        self._batches += 1
        stats = BatchStats(
            size=len(requests),
            tokens=max(r.cost for r in requests) * len(requests),
            real_tokens=sum(r.cost for r in requests),
            queue_wait_s=started - min(r.arrival for r in requests),
            compute_s=loop.time() - started,
            ok=error is None,
        )
        for trace in {id(r.trace): r.trace for r in requests if r.trace is not None}.values():
            trace.add_batch(stats)
        self._report(stats)
        return error

    def _failure(self, error: Exception) -> BatchFailed:
        # One BatchFailed per caller: a shared exception object would collect every caller's traceback.
        if isinstance(error, _ResultMismatch):
            failure = BatchFailed(f"batcher {self.name!r}: {error}")
        else:
            failure = BatchFailed(f"batcher {self.name!r}: the model raised {type(error).__name__}: {error}")
        failure.__cause__ = error
        return failure

    def _report(self, stats: BatchStats) -> None:
        if self._on_batch is None:
            return
        try:
            self._on_batch(stats)
        except Exception:
            log.exception("on_batch hook of batcher %r raised; ignored", self.name)

    def _settle(self, request: _Request[T, R]) -> bool:
        if request.state == _FINISHED:
            return False
        if request.state == _QUEUED:
            self._waiting -= 1
        request.state = _FINISHED
        self._pending.discard(request)
        return True

    def _drop(self, request: _Request[T, R]) -> None:
        if request.state == _QUEUED and self._settle(request):
            request.future.cancel()
            self._dropped += 1

    def _abandon(self, request: _Request[T, R]) -> None:
        self._drop(request)
        if not request.future.cancel():  # already answered: mark its error seen so nothing logs it as lost
            request.future.add_done_callback(_retrieve)

    def _resolve(self, request: _Request[T, R], value: R) -> None:
        if self._settle(request):
            self._completed += 1
            if not request.future.done():
                request.future.set_result(value)

    def _reject(self, request: _Request[T, R], error: Exception) -> None:
        if self._settle(request):
            self._failed += 1
            if not request.future.done():
                request.future.set_exception(error)

    def _on_loop_exit(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            reason = "its loop task was cancelled"
            log.error("batcher %r: %s", self.name, reason)
        elif (exc := task.exception()) is not None:
            reason = f"its loop died with {type(exc).__name__}: {exc}"
            log.error("batcher %r: loop died", self.name, exc_info=exc)
        elif not self._pending:
            return
        else:
            reason = "its loop ended with work still pending"
        self._stopped = reason
        for request in list(self._pending):
            self._reject(request, ShuttingDown(f"batcher {self.name!r} stopped: {reason}"))
