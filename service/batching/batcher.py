"""MicroBatcher: turns concurrent one-item calls into batched calls of a model on its own thread.

Asyncio only (see "The batcher contract" in docs/architecture.md). One loop task owns the queue: it blocks for
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
from typing import Generic, TypeVar

from service.batching.ledger import Counts, Ledger, Request, retrieve
from service.batching.policy import BatchPolicy, plan_batches
from service.errors import BatchFailed, Overloaded, ShuttingDown
from service.observability.stats import BatchStats
from service.observability.trace import current_trace

__all__ = ["BatchPolicy", "BatchStats", "Counts", "MicroBatcher", "plan_batches"]

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class _ResultMismatch(Exception):
    """``fn`` returned a different number of results than it was given inputs."""


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
        self._queue: deque[Request[T, R]] = deque()
        self._ledger: Ledger[T, R] = Ledger()
        self._queued_max_cost = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stopped: str | None = None

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
        return self._ledger.waiting

    @property
    def counts(self) -> Counts:
        """Items submitted, completed, failed and dropped, and model calls made, since start."""
        return self._ledger.counts

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
            self._ledger.abandon(request)
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
            self._ledger.abandon_all(requests)
            raise
        except BaseException:
            for request in requests:
                request.future.add_done_callback(retrieve)
            raise
        return results

    async def close(self, drain: bool = True) -> None:
        """Stop intake; finish (drain) or fail with ShuttingDown what is queued; await the loop; idempotent."""
        self._closing = True
        if not drain:
            for request in self._ledger.queued():
                self._ledger.reject(
                    request, ShuttingDown(f"batcher {self.name!r} closed before this input was computed")
                )
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

    def _admit(self, items: Sequence[T]) -> list[Request[T, R]]:
        self._check_open()
        n, limit = len(items), self.policy.max_queue
        waiting = self._ledger.waiting
        if waiting + n > limit:
            hint = "send fewer items per request or raise max_queue" if n > limit else "retry later"
            raise Overloaded(
                f"batcher {self.name!r} has {waiting} of {limit} queue places taken and cannot take {n} more; {hint}",
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
            Request(item, c, loop.create_future(), now, trace=trace) for item, c in zip(items, costs, strict=True)
        ]
        self._queue.extend(requests)
        self._ledger.admit(requests)
        self._queued_max_cost = max(self._queued_max_cost, *costs)
        # The loop only needs waking when it may be blocked for a first item or for a batch to fill.
        if was_empty or self._fills():
            self._wakeup.set()
        return requests

    def _fills(self) -> bool:
        n = self._ledger.waiting
        return n >= self.policy.max_batch_size or n * self._queued_max_cost >= self.policy.max_batch_tokens

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._queue and not self._ledger.is_live(self._queue[0]):
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

    def _take_window(self, now: float) -> list[list[Request[T, R]]]:
        policy = self.policy
        window: list[Request[T, R]] = []
        while self._queue and len(window) < policy.window:
            request = self._queue.popleft()
            if self._ledger.is_live(request):
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

    async def _run_batch(self, batch: list[Request[T, R]], loop: asyncio.AbstractEventLoop) -> None:
        live = [r for r in batch if self._ledger.is_live(r)]  # callers may have left while this batch waited its turn
        if not live:
            return
        self._ledger.run(live)
        error = await self._compute(live, loop)
        if error is None:
            return
        if not (self.policy.retry_singly and len(live) > 1) or isinstance(error, _ResultMismatch):
            for request in live:
                self._ledger.reject(request, self._failure(error))
            return
        for request in live:
            single = error if request.future.done() else await self._compute([request], loop)
            if single is not None:
                self._ledger.reject(request, self._failure(single))

    async def _compute(self, requests: list[Request[T, R]], loop: asyncio.AbstractEventLoop) -> Exception | None:
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
                self._ledger.resolve(request, value)
        self._ledger.counts.batches += 1
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

    def _on_loop_exit(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            reason = "its loop task was cancelled"
            log.error("batcher %r: %s", self.name, reason)
        elif (exc := task.exception()) is not None:
            reason = f"its loop died with {type(exc).__name__}: {exc}"
            log.error("batcher %r: loop died", self.name, exc_info=exc)
        elif not self._ledger.pending:
            return
        else:
            reason = "its loop ended with work still pending"
        self._stopped = reason
        for request in list(self._ledger.pending):
            self._ledger.reject(request, ShuttingDown(f"batcher {self.name!r} stopped: {reason}"))
