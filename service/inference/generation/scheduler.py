"""Continuous batching for one causal LM: a step loop on the model's own thread.

Each turn of the loop either prefills the requests that arrived (they join the running batch at once) or decodes
one token for every running sequence. Finished, stopped and abandoned sequences leave between steps and their
slots are reused on the next turn. Admission keeps three budgets: sequences running at once, prompt tokens
prefilled per step, and KV-cache tokens reserved (prompt + max_tokens of every running sequence).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from models.generation import DecodeBatch, GenerationModel, Row
from service.errors import BatchFailed, Overloaded, ShuttingDown
from service.inference.generation.stream import Delta, Failed, Finish, FinishReason, GenerationRequest
from service.inference.generation.text import TextCursor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GenerationLimits:
    """The scheduler's budgets (see the module docstring); ``max_waiting`` bounds the queue (503 beyond)."""

    max_running: int = 16
    step_tokens: int = 2048
    kv_tokens: int = 65536
    max_waiting: int = 256


class GenerationObserver(Protocol):
    """Hooks the scheduler calls from the model thread (metrics); they must be quick and thread-safe."""

    def on_step(self, model_id: str, kind: str, sequences: int, tokens: int, seconds: float) -> None:
        """One ``prefill`` or ``decode`` step ran over ``sequences`` sequences, feeding ``tokens`` tokens."""

    def on_first_token(self, model_id: str, seconds: float) -> None:
        """A request's first token came out ``seconds`` after it was submitted."""

    def on_token_gap(self, model_id: str, seconds: float) -> None:
        """Time between two tokens of one request."""

    def on_finish(self, model_id: str, completion_tokens: int) -> None:
        """A request ended with ``completion_tokens`` written."""


class NullObserver:
    """Observes nothing."""

    def on_step(self, model_id: str, kind: str, sequences: int, tokens: int, seconds: float) -> None:
        """Nothing."""

    def on_first_token(self, model_id: str, seconds: float) -> None:
        """Nothing."""

    def on_token_gap(self, model_id: str, seconds: float) -> None:
        """Nothing."""

    def on_finish(self, model_id: str, completion_tokens: int) -> None:
        """Nothing."""


@dataclass(eq=False, slots=True)
class _Slot:
    request: GenerationRequest
    row: Row
    cursor: TextCursor
    last_token_at: float = 0.0


class GenerationScheduler:
    """Owns one model's decoding: ``submit`` from any thread; the loop runs on ``executor`` (the model's thread)."""

    def __init__(
        self,
        model_id: str,
        model: GenerationModel,
        limits: GenerationLimits,
        executor: concurrent.futures.ThreadPoolExecutor,
        observer: GenerationObserver | None = None,
    ) -> None:
        self.model_id = model_id
        self.model = model
        self.limits = limits
        self._executor = executor
        self._observer: GenerationObserver = observer or NullObserver()
        self._waiting: collections.deque[GenerationRequest] = collections.deque()
        self._wake = threading.Condition()
        self._batch = DecodeBatch(model)
        self._slots: list[_Slot] = []
        self._finished: list[tuple[GenerationRequest, Finish]] = []
        self.reserved = 0
        self._closing = False
        self._drain = True
        self._future: concurrent.futures.Future[None] | None = None
        self.steps = 0
        # Read by metrics from the event loop: plain ints, written only by the model thread.
        self.running = 0
        self.cache_tokens = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def alive(self) -> bool:
        return self._future is not None and not self._future.done()

    def running_requests(self) -> list[GenerationRequest]:
        """The requests decoding now: a snapshot, safe to read from any thread (health checks, tests)."""
        return [slot.request for slot in list(self._slots)]

    def start(self) -> None:
        """Start the step loop on the model's thread."""
        self._future = self._executor.submit(self._run)

    def submit(self, request: GenerationRequest) -> None:
        """Queue ``request``; it joins the running batch at the next step that has room.

        Raises:
            ShuttingDown: the scheduler is closing or has stopped.
            Overloaded: ``max_waiting`` requests are already queued.
        """
        with self._wake:
            if self._closing or not self.alive:
                raise ShuttingDown(f"model {self.model_id!r} is not taking new requests")
            if len(self._waiting) >= self.limits.max_waiting:
                raise Overloaded(f"model {self.model_id!r} has {len(self._waiting)} requests waiting; retry later")
            self._waiting.append(request)
            self._wake.notify()

    def wake(self) -> None:
        """Nudge an idle loop (after a cancellation, so a waiting request is dropped promptly)."""
        with self._wake:
            self._wake.notify()

    def close(self, drain: bool = True) -> concurrent.futures.Future[None] | None:
        """Take no new requests; finish the queued ones when ``drain``, else fail them. Returns the loop's future."""
        with self._wake:
            self._closing, self._drain = True, drain
            self._wake.notify()
        return self._future

    # --- the model thread from here on ---

    def _run(self) -> None:
        try:
            while self._turn():
                pass
        except Exception as exc:  # the loop itself broke: nobody may be left waiting
            log.exception("generation loop of %s stopped", self.model_id)
            self._fail_all(BatchFailed(f"generation stopped for model {self.model_id!r}: {type(exc).__name__}"))
            raise
        self._fail_all(ShuttingDown(f"model {self.model_id!r} stopped"))

    def _turn(self) -> bool:
        """One prefill or decode step; False once the loop should end."""
        self._prune()
        with self._wake:
            while not self._slots and not self._live_waiting():
                if self._closing:
                    return False
                self._wake.wait()
            if self._closing and not self._drain:
                return False
            joining = self._admit()
        try:
            if joining:
                self._prefill(joining)
            else:
                self._decode()
        except Exception as exc:
            log.exception("generation step failed for %s", self.model_id)
            error = BatchFailed(f"model {self.model_id!r} failed: {type(exc).__name__}")
            for slot in [*self._slots, *joining]:
                slot.request.push(Failed(error))
            self._slots, self.reserved, self._finished = [], 0, []
            self._batch = DecodeBatch(self.model)
        self.steps += 1
        self._prune()
        self._publish()
        finished, self._finished = self._finished, []
        for request, finish in finished:
            request.push(finish)
        return True

    def _live_waiting(self) -> bool:
        while self._waiting and self._waiting[0].cancelled:
            self._waiting.popleft()
        return bool(self._waiting)

    def _admit(self) -> list[_Slot]:
        """Take waiting requests in order while the three budgets allow (called with the lock held)."""
        limits, prompt_tokens = self.limits, 0
        joining: list[_Slot] = []
        while self._live_waiting() and len(self._slots) + len(joining) < limits.max_running:
            request = self._waiting[0]
            need = len(request.prompt) + request.sampling.max_tokens
            if joining and prompt_tokens + len(request.prompt) > limits.step_tokens:
                break
            if (self._slots or joining) and self.reserved + need > limits.kv_tokens:
                break
            self._waiting.popleft()
            prompt_tokens += len(request.prompt)
            self.reserved += need
            row = Row(key=request, prompt=request.prompt, sampling=request.sampling)
            joining.append(_Slot(request, row, TextCursor(self.model.decode, request.stop)))
        return joining

    def _prefill(self, joining: list[_Slot]) -> None:
        started = time.monotonic()
        tokens = self._batch.add([slot.row for slot in joining])
        now = time.monotonic()
        prompt_tokens = sum(len(s.row.prompt) for s in joining)
        self._observer.on_step(self.model_id, "prefill", len(joining), prompt_tokens, now - started)
        self._slots.extend(joining)
        for slot, token in zip(joining, tokens, strict=True):
            self._observer.on_first_token(self.model_id, now - slot.request.submitted_at)
            slot.last_token_at = now
            self._deliver(slot, token)

    def _decode(self) -> None:
        started = time.monotonic()
        tokens = self._batch.step()
        now = time.monotonic()
        self._observer.on_step(self.model_id, "decode", len(tokens), len(tokens), now - started)
        for slot, token in zip(self._slots, tokens, strict=True):
            self._observer.on_token_gap(self.model_id, now - slot.last_token_at)
            slot.last_token_at = now
            self._deliver(slot, token)

    def _deliver(self, slot: _Slot, token: int) -> None:
        """Pass one new token's text to the caller; finish the request on EOS, a stop string or max_tokens."""
        request, written = slot.request, len(slot.row.generated)
        reason: FinishReason | None = None
        if token in self.model.eos_ids:
            reason = "stop"
        else:
            text = slot.cursor.push(token)
            if text:
                request.push(Delta(text))
            if slot.cursor.stopped:
                reason = "stop"
            elif written >= request.sampling.max_tokens:
                reason = "length"
        if reason is None:
            return
        rest = slot.cursor.flush()
        if rest:
            request.push(Delta(rest))
        # Sent once the sequence has left the batch: a caller that sees its finish sees its slot free too.
        self._finished.append((request, Finish(reason, len(request.prompt), written, tuple(slot.row.generated))))
        self._observer.on_finish(self.model_id, written)
        request.cancelled = True  # done: pruned like an abandoned one

    def _prune(self) -> None:
        """Drop finished and abandoned sequences from the batch, giving back their budget."""
        keep = [i for i, slot in enumerate(self._slots) if not slot.request.cancelled]
        if len(keep) == len(self._slots):
            return
        for slot in self._slots:
            if slot.request.cancelled:
                self.reserved -= len(slot.row.prompt) + slot.request.sampling.max_tokens
        self._slots = [self._slots[i] for i in keep]
        self._batch.remove(keep)
        self._publish()

    def _publish(self) -> None:
        self.running = len(self._slots)
        self.cache_tokens = self._batch.cache_tokens

    def _fail_all(self, error: ShuttingDown | BatchFailed) -> None:
        with self._wake:
            waiting, self._waiting = list(self._waiting), collections.deque()
            self._closing = True
        for request in [*(s.request for s in self._slots), *waiting]:
            if not request.cancelled:
                request.push(Failed(error))
        self._slots, self.running, self.cache_tokens = [], 0, 0
