"""Model calls on the model's own thread: handing a batch over, and answering its callers when it comes back.

The batcher (``service/batching/batcher.py``) decides what runs when; this module runs it and settles each request
through the ledger. Timings are taken on the model thread, so a batch handed over behind another one does not count
its wait for the thread as compute.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from service.batching.ledger import Ledger, Request, retrieve
from service.observability.stats import BatchStats

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class ResultMismatch(Exception):
    """``fn`` returned a different number of results than it was given inputs."""


@dataclass(slots=True)
class Flight(Generic[T, R]):
    """A batch handed to the model thread: its requests, the call, and when it was handed over (loop and perf)."""

    requests: list[Request[T, R]]
    call: asyncio.Future[tuple[list[R], float, float]]
    handed: float
    handed_perf: float


def _timed(fn: Callable[[list[T]], list[R]], items: list[T]) -> tuple[list[R], float, float]:
    """Run ``fn`` (on the model thread); its results and when it began and ended (``time.perf_counter``)."""
    began = time.perf_counter()
    results = fn(items)
    return results, began, time.perf_counter()


class ModelCalls(Generic[T, R]):
    """Runs ``fn`` on ``executor`` for launched batches and resolves their requests in ``ledger``."""

    def __init__(
        self,
        fn: Callable[[list[T]], list[R]],
        executor: concurrent.futures.Executor,
        ledger: Ledger[T, R],
        name: str,
        on_batch: Callable[[BatchStats], None] | None,
    ) -> None:
        self._fn = fn
        self._executor = executor
        self._ledger = ledger
        self._name = name
        self._on_batch = on_batch

    def launch(self, live: list[Request[T, R]]) -> Flight[T, R] | None:
        """Hand ``live`` (already marked running) to the model thread, where it starts once the batch before it is
        done; None when empty."""
        if not live:
            return None
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._executor, _timed, self._fn, [r.item for r in live])
        call.add_done_callback(retrieve)  # a call nobody awaits any more (the loop died) must not log its error
        return Flight(live, call, loop.time(), time.perf_counter())

    async def finish(self, flight: Flight[T, R] | None) -> Exception | None:
        """Await the call; resolve every request on success, else return the error and leave them pending."""
        if flight is None:
            return None
        requests = flight.requests
        error: Exception | None = None
        began = flight.handed_perf
        try:
            results, began, ended = await flight.call
            compute_s = ended - began
            if len(results) != len(requests):
                raise ResultMismatch(
                    f"the model returned {len(results)} results for a batch of {len(requests)} inputs; "
                    "fn must return exactly one result per input"
                )
        except Exception as exc:
            error = exc
            compute_s = time.perf_counter() - began
        else:
            for request, value in zip(requests, results, strict=True):
                self._ledger.resolve(request, value)
        self._ledger.counts.batches += 1
        # Queue wait ends when the model thread starts the batch, which may have sat behind the batch before it.
        started = flight.handed + max(0.0, began - flight.handed_perf)
        stats = BatchStats(
            size=len(requests),
            tokens=max(r.cost for r in requests) * len(requests),
            real_tokens=sum(r.cost for r in requests),
            queue_wait_s=max(0.0, started - min(r.arrival for r in requests)),
            compute_s=compute_s,
            ok=error is None,
        )
        for trace in {id(r.trace): r.trace for r in requests if r.trace is not None}.values():
            trace.add_batch(stats)
        self._report(stats)
        return error

    def _report(self, stats: BatchStats) -> None:
        if self._on_batch is None:
            return
        try:
            self._on_batch(stats)
        except Exception:
            log.exception("on_batch hook of batcher %r raised; ignored", self._name)
