"""The one path every way in shares: chunk a text, plan chunk → target, dispatch, stream per-chunk results.

``Pipeline.prepare`` does every check that can refuse a request (limits, unknown models, forbidden URLs)
before any chunk is sent; ``Pipeline.run`` yields ``ChunkResult``s in completion order and cancels whatever
is still pending when its consumer stops early (client gone).
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
    InvalidInput,
)
from service.inference.registry import ModelRegistry
from service.jobs.chunking import Chunk, Strategy, chunk_text
from service.jobs.targets import Assignment, Job, LocalTarget, Target, target_label
from service.observability.trace import current_trace
from service.outbound.guard import OutboundPolicy, check_url, resolve_and_check
from service.outbound.remote import RemoteClient, RemoteTarget, UpstreamCallError

Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why one chunk failed, safe to show to the caller."""

    type: str
    message: str


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """One chunk's outcome at one target."""

    index: int
    target: str
    success: bool
    result: Any = None
    error: ErrorInfo | None = None
    latency_ms: float = 0.0
    attempts: int = 1


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

    async def prepare(self, job: Job) -> Plan:
        """Chunk the text and check every target before anything is sent.

        Raises:
            InputTooLarge: more chunks than allowed.
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
                self.registry.get(target.model)
        await self._check_remote({t for t in targets if isinstance(t, RemoteTarget)})
        chunks = chunk_text(
            job.text,
            strategy=job.chunking,
            size=job.chunk_size,
            overlap=job.overlap,
            count_tokens=self._token_counter(job, targets),
            max_chunks=self.limits.max_chunks,
        )
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
        """Dispatch every (chunk, target) pair at once; yield results as they complete."""
        deadline = time.monotonic() + plan.job.timeout_s
        done: asyncio.Queue[ChunkResult] = asyncio.Queue()
        tasks = [
            asyncio.create_task(self._one(chunk, target, plan.job, deadline, done), name=f"chunk-{chunk.index}")
            for chunk, target in plan.work
        ]
        try:
            for _ in range(len(tasks)):
                yield await done.get()
        finally:
            pending = [t for t in tasks if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                # asyncio.wait, not gather: if this waiter is cancelled again (anyio cancel scopes re-deliver),
                # gather would cancel the tasks a second time mid-cleanup and httpx would leak the sockets.
                await asyncio.wait(pending)

    async def collect(self, plan: Plan) -> list[ChunkResult]:
        """Every result, ordered by chunk index (and target order for broadcast)."""
        order = {(c.index, target_label(t)): i for i, (c, t) in enumerate(plan.work)}
        results = [r async for r in self.run(plan)]
        return sorted(results, key=lambda r: order[(r.index, r.target)])

    def _default_model(self) -> str:
        for engine in self.registry.engines.values():
            return engine.model_id
        raise InvalidInput("no local model is loaded; give remote targets", field="targets")

    def _token_counter(self, job: Job, targets: Sequence[Target]) -> Callable[[str], int] | None:
        if job.chunking is not Strategy.TOKENS:
            return None
        local = next((t for t in targets if isinstance(t, LocalTarget)), None)
        model_id = local.model if local else self._default_model()
        model = self.registry.engines[model_id].model
        return lambda text: model.count_tokens([text])[0]

    async def _check_remote(self, targets: set[RemoteTarget]) -> None:
        seen: set[tuple[str, int]] = set()
        for target in targets:
            parsed = check_url(target.endpoint(), self.policy)
            if (parsed.host, parsed.port) in seen:
                continue
            seen.add((parsed.host, parsed.port))
            if self.resolver is None:
                await resolve_and_check(parsed.host, parsed.port, self.policy)
            else:
                await resolve_and_check(parsed.host, parsed.port, self.policy, self.resolver)

    def _check_capacity(self, work: Sequence[tuple[Chunk, Target]]) -> None:
        needed: dict[str, int] = {}
        for _, target in work:
            if isinstance(target, LocalTarget):
                needed[target.model] = needed.get(target.model, 0) + 1
        for model_id, n in needed.items():
            self.registry.engines[model_id].check_room(n, what="chunks")

    async def _one(
        self, chunk: Chunk, target: Target, job: Job, deadline: float, done: asyncio.Queue[ChunkResult]
    ) -> None:
        start = time.perf_counter()
        label = target_label(target)
        attempts = 1
        try:
            if isinstance(target, LocalTarget):
                local = self._local(target, chunk.text, job.encoding_format)
                value = await asyncio.wait_for(local, deadline - time.monotonic())
            else:
                outcome = await self.remote.call(target, chunk.text, timeout_s=job.timeout_s, deadline=deadline)
                value, attempts = outcome.value, outcome.attempts
            result = ChunkResult(chunk.index, label, True, result=value, latency_ms=_ms(start), attempts=attempts)
        except UpstreamCallError as exc:
            result = _failed(chunk, label, start, exc.kind, exc.message, exc.attempts)
        except TimeoutError:
            result = _failed(chunk, label, start, "timeout", "the chunk did not finish before the deadline", attempts)
        except DeadlineExceeded as exc:
            result = _failed(chunk, label, start, "timeout", exc.message, attempts)
        except BatchFailed as exc:
            result = _failed(chunk, label, start, "model_error", exc.message, attempts)
        except ChunkserveError as exc:
            result = _failed(chunk, label, start, type(exc).__name__, exc.message, attempts)
        done.put_nowait(result)

    async def _local(self, target: LocalTarget, text: str, encoding: str = "float") -> Any:
        output = await self.registry.engines[target.model].run([text], field="text")
        return to_jsonable(output.results[0], encoding)


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


def _failed(chunk: Chunk, label: str, start: float, kind: str, message: str, attempts: int) -> ChunkResult:
    return ChunkResult(
        chunk.index, label, False, error=ErrorInfo(kind, message), latency_ms=_ms(start), attempts=attempts
    )


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
