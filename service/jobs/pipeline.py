"""The one path every way in shares: chunk a text, plan chunk → target, dispatch, stream per-chunk results.

``Pipeline.prepare`` does every check that can refuse a request (limits, unknown models, forbidden URLs)
before any chunk is sent; ``Pipeline.run`` yields ``ChunkResult``s in completion order through a bounded window
(``service/jobs/dispatch.py``) and cancels whatever is still pending when its consumer stops early (client gone).
Each kind of target has its own call (``_calls``); a new kind adds one entry there.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from models.base import Classification
from service.errors import (
    BatchFailed,
    ChunkserveError,
    DeadlineExceeded,
    ForbiddenTarget,
    InvalidInput,
    Overloaded,
    UpstreamError,
)
from service.inference.generation.jobs import generate_for_chunk
from service.inference.registry import ModelRegistry
from service.jobs.chunking import Chunk, Strategy, chunk_text
from service.jobs.dispatch import dispatch
from service.jobs.results import BUDGET_ERROR, ChunkResult, ErrorInfo, ResultBudget, failed, ms_since
from service.jobs.targets import Assignment, Job, LocalTarget, Target, target_label
from service.observability.trace import current_trace
from service.outbound.guard import OutboundPolicy, check_url, resolve_and_check
from service.outbound.remote import RemoteClient, RemoteTarget, UpstreamCallError

Resolver = Callable[[str, int], Awaitable[list[str]]]

__all__ = ["ChunkResult", "ErrorInfo", "Pipeline", "PipelineLimits", "Plan", "Resolver", "to_jsonable"]

# Texts longer than this are chunked on a worker thread, so that a large job does not stall other requests.
_INLINE_CHUNK_CHARS = 20_000
# How long a local chunk waits before asking a full queue again (other requests filled it since prepare).
_FULL_QUEUE_PAUSE_S = 0.02


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked job: its chunks and which target gets which chunk."""

    job: Job
    chunks: list[Chunk]
    work: list[tuple[Chunk, Target]] = field(default_factory=list)


@dataclass
class PipelineLimits:
    """Bounds on one job."""

    max_chunks: int = 10_000
    max_timeout_s: float = 120.0
    default_timeout_s: float = 30.0
    window: int = 256  # (chunk, target) calls of one job in flight at once
    max_result_bytes: int = 256 * 1024 * 1024  # bytes of results one job may hold


@dataclass(frozen=True, slots=True)
class _Value:
    value: Any
    attempts: int
    size: int


class Pipeline:
    """Turns jobs into per-chunk results, through local engines and remote APIs."""

    def __init__(
        self,
        registry: ModelRegistry,
        remote: RemoteClient,
        policy: OutboundPolicy,
        limits: PipelineLimits,
        *,
        resolver: Resolver | None = None,
    ) -> None:
        self.registry = registry
        self.remote = remote
        self.policy = policy
        self.limits = limits
        self.resolver = resolver
        self._gates: dict[str, asyncio.Semaphore] = {}

    async def prepare(self, job: Job) -> Plan:
        """Chunk the text and check every target before anything is sent.

        Raises:
            InputTooLarge: more chunks than allowed, or more local chunks at once than a model's queue can hold.
            ModelNotFound: a local target names no served model.
            ForbiddenTarget: a remote URL is refused by the outbound policy.
            InvalidInput: a bad parameter (chunking, overlap, timeout).
            Overloaded: a local model's queue cannot take this job's chunks now.
            ShuttingDown: the server is not ready (loading, draining or failed).
        """
        self.registry.ensure_accepting()  # remote-only jobs too: a draining server starts no new work
        targets = job.targets or (LocalTarget(self._default_model()),)
        if job.timeout_s <= 0 or job.timeout_s > self.limits.max_timeout_s:
            raise InvalidInput(f"timeout_s must be in (0, {self.limits.max_timeout_s}]", field="timeout_s")
        for target in targets:
            if isinstance(target, LocalTarget):
                self._check_local(target)
        if job.reduce is not None:
            self.registry.generator(job.reduce.model, "reduce.model")
        await self._check_remote({t for t in targets if isinstance(t, RemoteTarget)})
        chunks = await self._chunk(job, targets)
        if job.assignment is Assignment.BROADCAST:
            work = [(c, t) for c in chunks for t in targets]
        else:
            work = [(c, targets[c.index % len(targets)]) for c in chunks]
        self._check_capacity(work)
        trace = current_trace.get()
        if trace is not None:
            trace.chunks += len(chunks)
        return Plan(job=job, chunks=chunks, work=work)

    async def run(self, plan: Plan) -> AsyncGenerator[ChunkResult, None]:
        """Dispatch the (chunk, target) pairs through the job's window; yield results as they complete."""
        deadline = time.monotonic() + plan.job.timeout_s
        budget = ResultBudget(self.limits.max_result_bytes)
        self._gates = {
            model_id: asyncio.Semaphore(engine.scheduler.limits.max_running)
            for model_id, engine in self.registry.generators.items()
        }

        async def one(chunk: Chunk, target: Target) -> ChunkResult:
            return await self._one(chunk, target, plan.job, deadline, budget)

        results = dispatch(plan.work, one, label=target_label, window=self.limits.window, deadline=deadline)
        try:
            async for result in results:
                yield result
        finally:
            await results.aclose()

    async def collect(self, plan: Plan) -> list[ChunkResult]:
        """Every result, ordered by chunk index (and target order for broadcast)."""
        order = {(c.index, target_label(t)): i for i, (c, t) in enumerate(plan.work)}
        results = [r async for r in self.run(plan)]
        return sorted(results, key=lambda r: order[(r.index, r.target)])

    async def reduce(self, plan: Plan, results: Sequence[ChunkResult]) -> dict[str, Any] | None:
        """The job's reduce step over ``results`` (in chunk order; failed chunks left out), or None without one."""
        target = plan.job.reduce
        if target is None:
            return None
        parts = [_as_text(r.result) for r in results if r.success]
        try:
            engine = self.registry.generator(target.model, "reduce.model")
            value = await generate_for_chunk(engine, target, "\n\n".join(parts))
        except ChunkserveError as exc:
            return {"success": False, "error": {"type": type(exc).__name__, "message": exc.message}}
        return {"success": True, "result": value, "inputs": len(parts)}

    def _check_local(self, target: LocalTarget) -> None:
        if target.model in self.registry.generators:
            self.registry.generator(target.model, "targets")
            return
        self.registry.get(target.model)
        if target.prompt is not None or target.max_tokens is not None:
            raise InvalidInput(
                f"prompt and max_tokens apply to generation models; {target.model!r} is not one", field="targets"
            )

    def _default_model(self) -> str:
        for engine in self.registry.engines.values():
            return engine.model_id
        raise InvalidInput("no local model is loaded; give remote targets", field="targets")

    async def _chunk(self, job: Job, targets: Sequence[Target]) -> list[Chunk]:
        count_tokens = self._token_counter(job, targets)

        def cut() -> list[Chunk]:
            return chunk_text(
                job.text,
                strategy=job.chunking,
                size=job.chunk_size,
                overlap=job.overlap,
                count_tokens=count_tokens,
                max_chunks=self.limits.max_chunks,
            )

        if len(job.text) <= _INLINE_CHUNK_CHARS:
            return cut()
        return await asyncio.to_thread(cut)

    def _token_counter(self, job: Job, targets: Sequence[Target]) -> Callable[[str], int] | None:
        if job.chunking is not Strategy.TOKENS:
            return None
        local = next((t for t in targets if isinstance(t, LocalTarget)), None)
        model_id = local.model if local else self._default_model()
        generator = self.registry.generators.get(model_id)
        model = generator.model if generator is not None else self.registry.engines[model_id].model
        return lambda text: model.count_tokens([text])[0]

    async def _check_remote(self, targets: set[RemoteTarget]) -> None:
        seen: set[tuple[str, int]] = set()
        for target in targets:
            parsed = check_url(target.endpoint(), self.policy)
            if (parsed.host, parsed.port) in seen:
                continue
            seen.add((parsed.host, parsed.port))
            try:
                await resolve_and_check(parsed.host, parsed.port, self.policy, self.resolver)
            except ForbiddenTarget:
                raise
            except UpstreamError:
                # A name that does not resolve now is that target's failure, not the job's: its chunks fail
                # with "connect" (the address is checked again at connect time), the others go ahead.
                continue

    def _check_capacity(self, work: Sequence[tuple[Chunk, Target]]) -> None:
        needed: dict[str, int] = {}
        for _, target in work:
            if isinstance(target, LocalTarget):
                needed[target.model] = needed.get(target.model, 0) + 1
        for model_id, n in needed.items():
            # Only a window of the job is queued at once: that is what must fit. Generation chunks wait in the
            # job (see _call_generate), not in a queue.
            if model_id in self.registry.engines:
                self.registry.engines[model_id].check_room(min(n, self.limits.window), what="chunks")

    async def _one(self, chunk: Chunk, target: Target, job: Job, deadline: float, budget: ResultBudget) -> ChunkResult:
        start = time.perf_counter()
        label = target_label(target)
        if budget.spent:
            return failed(chunk.index, label, start, BUDGET_ERROR, budget.message(), attempts=0)
        try:
            out = await self._call(target, chunk.text, job, deadline, budget)
        except UpstreamCallError as exc:
            if exc.kind == "too_large" and budget.left < self.remote.max_response_bytes:
                return failed(chunk.index, label, start, BUDGET_ERROR, budget.message(), exc.attempts)
            return failed(chunk.index, label, start, exc.kind, exc.message, exc.attempts)
        except (TimeoutError, DeadlineExceeded):
            return failed(chunk.index, label, start, "timeout", "the chunk did not finish before the deadline")
        except BatchFailed as exc:
            return failed(chunk.index, label, start, "model_error", exc.message)
        except ChunkserveError as exc:
            return failed(chunk.index, label, start, type(exc).__name__, exc.message)
        if not budget.take(out.size):
            return failed(chunk.index, label, start, BUDGET_ERROR, budget.message(), out.attempts)
        return ChunkResult(chunk.index, label, True, out.value, latency_ms=ms_since(start), attempts=out.attempts)

    def _call(self, target: Target, text: str, job: Job, deadline: float, budget: ResultBudget) -> Awaitable[_Value]:
        # One call per kind of target.
        if isinstance(target, LocalTarget):
            if target.model in self.registry.generators:
                return self._call_generate(target, text, deadline)
            return self._call_local(target, text, deadline, job.encoding_format)
        return self._call_remote(target, text, job, deadline, budget)

    async def _call_generate(self, target: LocalTarget, text: str, deadline: float) -> _Value:
        generator = self.registry.generators[target.model]
        async with asyncio.timeout(deadline - time.monotonic()):
            # A job's generation chunks enter the scheduler's queue a batchful at a time, so that one long text
            # neither fills the queue (503 for everyone) nor waits behind a queue it filled itself.
            async with self._gates[target.model]:
                value = await generate_for_chunk(generator, target, text)
        return _Value(value, 1, len(orjson.dumps(value)))

    async def _call_local(self, target: LocalTarget, text: str, deadline: float, encoding: str) -> _Value:
        engine = self.registry.engines[target.model]
        async with asyncio.timeout(deadline - time.monotonic()):
            while True:
                try:
                    output = await engine.run([text], field="text")
                    break
                except Overloaded:
                    # prepare found room for the job's window; other requests have filled the queue since.
                    await asyncio.sleep(_FULL_QUEUE_PAUSE_S)
        value = to_jsonable(output.results[0], encoding)
        return _Value(value, 1, len(orjson.dumps(value)))

    async def _call_remote(
        self, target: RemoteTarget, text: str, job: Job, deadline: float, budget: ResultBudget
    ) -> _Value:
        outcome = await self.remote.call(
            target, text, timeout_s=job.timeout_s, deadline=deadline, max_bytes=budget.left
        )
        return _Value(outcome.value, outcome.attempts, outcome.size)


def _as_text(value: Any) -> str:
    """A chunk result as text for a reduce prompt: a generation's text, a remote answer, or its JSON."""
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return str(value["text"])
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def to_jsonable(value: Any, encoding: str = "float") -> Any:
    """A model result as plain JSON types; a vector as float32 numbers, or base64 of its float32 bytes.

    Vectors go through orjson's float32 formatting so that every route writes the digits ``/v1/embeddings``
    writes (``0.1``, not the float64 expansion ``0.10000000149011612`` of the same float32).
    """
    if isinstance(value, np.ndarray):
        vector = value.astype("<f4", copy=False)
        if encoding == "base64":
            return base64.b64encode(vector.tobytes()).decode()
        return orjson.loads(orjson.dumps(vector, option=orjson.OPT_SERIALIZE_NUMPY))
    if isinstance(value, Classification):
        return {"label": value.label, "score": value.score, "scores": dict(value.scores)}
    return value
