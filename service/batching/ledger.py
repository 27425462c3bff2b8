"""The batcher's ledger of accepted requests: each is answered exactly once (result, error or drop) and counted.

No scheduling here: ``service/batching/batcher.py`` decides when requests run; this module only moves each one through
queued → running → finished and settles its caller's future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from service.observability.trace import RequestTrace

T = TypeVar("T")
R = TypeVar("R")

QUEUED, RUNNING, FINISHED = 0, 1, 2


@dataclass(eq=False, slots=True)
class Request(Generic[T, R]):
    """One accepted item and its caller's future."""

    item: T
    cost: int
    future: asyncio.Future[R]
    arrival: float
    state: int = QUEUED
    trace: RequestTrace | None = None


@dataclass(slots=True)
class Counts:
    """What a batcher has done since it started."""

    submitted: int = 0  # items accepted
    completed: int = 0  # items the model computed a result for (whether or not the caller still waited)
    failed: int = 0  # items answered with an error (model error, result mismatch, shut down, loop death)
    dropped: int = 0  # items whose caller left before they reached the model; never computed
    batches: int = 0  # calls of the model made (single retries included)


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a finished future's error as seen, so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


class Ledger(Generic[T, R]):
    """Accepted requests not yet finished, how many of them still wait, and the counts."""

    def __init__(self) -> None:
        # Queued or running requests: what must be failed if the loop dies or the batcher closes without draining.
        self.pending: set[Request[T, R]] = set()
        self.waiting = 0
        self.counts = Counts()

    def admit(self, requests: list[Request[T, R]]) -> None:
        """Take ``requests`` on as queued."""
        self.pending.update(requests)
        self.waiting += len(requests)
        self.counts.submitted += len(requests)

    def run(self, requests: list[Request[T, R]]) -> None:
        """Mark ``requests`` as handed to the model."""
        for request in requests:
            request.state = RUNNING
        self.waiting -= len(requests)

    def queued(self) -> list[Request[T, R]]:
        """Pending requests that have not reached the model."""
        return [r for r in self.pending if r.state == QUEUED]

    def is_live(self, request: Request[T, R]) -> bool:
        """Whether ``request`` is queued and its caller still waits (dropping it if the caller has left)."""
        if request.state != QUEUED:
            return False
        if request.future.done():  # the caller left and its cancellation handler has not run yet
            self.drop(request)
            return False
        return True

    def drop(self, request: Request[T, R]) -> None:
        """Forget a queued request whose caller left; it is never computed."""
        if request.state == QUEUED and self._settle(request):
            request.future.cancel()
            self.counts.dropped += 1

    def abandon(self, request: Request[T, R]) -> None:
        """The caller was cancelled: drop the request if it is still queued, else discard its outcome."""
        self.drop(request)
        if not request.future.cancel():  # already answered: mark its error seen so nothing logs it as lost
            request.future.add_done_callback(retrieve)

    def abandon_all(self, requests: Iterable[Request[T, R]]) -> None:
        """``abandon`` each of ``requests``."""
        for request in requests:
            self.abandon(request)

    def resolve(self, request: Request[T, R], value: R) -> None:
        """Answer ``request`` with its result (once; later answers are ignored)."""
        if self._settle(request):
            self.counts.completed += 1
            if not request.future.done():
                request.future.set_result(value)

    def reject(self, request: Request[T, R], error: Exception) -> None:
        """Answer ``request`` with ``error`` (once; later answers are ignored)."""
        if self._settle(request):
            self.counts.failed += 1
            if not request.future.done():
                request.future.set_exception(error)

    def _settle(self, request: Request[T, R]) -> bool:
        if request.state == FINISHED:
            return False
        if request.state == QUEUED:
            self.waiting -= 1
        request.state = FINISHED
        self.pending.discard(request)
        return True
