"""The Ray Data actor of ``chunkserve run --ray``: models loaded once, documents in, JSONL lines out.

Each actor holds what ``chunkserve run`` holds in-process (engines behind their batchers, the remote client, the
pipeline) on an event loop of its own thread; a batch of documents is chunked and run there, all at once, so the
batcher sees full batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from service.config import Settings
from service.errors import ChunkserveError
from service.inference.registry import ModelRegistry, Phase
from service.jobs.chunking import Strategy
from service.jobs.pipeline import Plan
from service.jobs.targets import Assignment, Job, LocalTarget, Target, target_label
from service.observability.metrics import Metrics
from service.offline.writer import chunk_line
from service.runtime import build_pipeline, default_loader, load_engines

T = TypeVar("T")
# Offline work is bounded by the documents in a batch; the queue limit is for concurrent clients of a server.
UNBOUNDED_QUEUE = 1 << 40


@dataclass(frozen=True)
class JobSpec:
    """What to do with every document: the same chunking and targets as ``/v1/process``."""

    chunking: Strategy
    chunk_size: int
    overlap: int
    targets: tuple[Target, ...]
    assignment: Assignment
    timeout_s: float

    def job(self, text: str) -> Job:
        """The job for one document's text."""
        return Job(text, self.chunking, self.chunk_size, self.overlap, self.targets, self.assignment, self.timeout_s)


def done_keys(pairs: list[list[Any]]) -> set[tuple[int, str]]:
    """The (chunk, target) pairs of a document already in the output, as sent in a row's ``done`` field."""
    return {(int(chunk), str(target)) for chunk, target in pairs}


class ChunkWorker:
    """``map_batches`` callable class: rows ``{id, text, done}`` in, rows ``{line, note, failed}`` out.

    ``line`` is one output JSONL line (without its newline) or empty; ``note`` is a document that was skipped,
    and why; ``failed`` is 1 for a chunk result that failed.
    """

    def __init__(self, settings: dict[str, Any], spec: JobSpec) -> None:
        base = Settings(**settings)
        self.settings = base.model_copy(update={"max_queue": max(base.max_queue, UNBOUNDED_QUEUE)})
        self.spec = spec
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chunk-worker-loop", daemon=True)
        self.thread.start()
        self.registry = ModelRegistry(expected=[m.id for m in self.settings.model_entries()])
        self.pipeline, self.http = self._call(self._build())
        self._call(self._load())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _build(self) -> Any:
        return build_pipeline(self.settings, self.registry)

    async def _load(self) -> None:
        targets = self.spec.targets
        if self.settings.models or not targets or any(isinstance(t, LocalTarget) for t in targets):
            await load_engines(self.settings, self.registry, default_loader, Metrics())
        self.registry.phase = Phase.READY

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        """Process one batch of documents (Ray Data calls this on the actor)."""
        return self._call(self._process(batch))

    async def _process(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        docs = zip(batch["id"], batch["text"], batch["done"], strict=True)
        answers = await asyncio.gather(*(self._document(str(i), str(t), str(d)) for i, t, d in docs))
        out: dict[str, list[Any]] = {"line": [], "note": [], "failed": []}
        for lines, note in answers:
            for line, failed in lines:
                out["line"].append(line)
                out["note"].append("")
                out["failed"].append(failed)
            if note:
                out["line"].append("")
                out["note"].append(note)
                out["failed"].append(0)
        return out

    async def _document(self, doc_id: str, text: str, done: str) -> tuple[list[tuple[str, int]], str]:
        if len(text) > self.settings.max_text_chars:
            limit = self.settings.max_text_chars
            return [], f"document {doc_id!r} has {len(text)} characters; at most {limit} (--max-text-chars)"
        try:
            plan = await self.pipeline.prepare(self.spec.job(text))
        except ChunkserveError as exc:
            return [], f"document {doc_id!r}: {exc.message}"
        skip = done_keys(orjson.loads(done))
        work = [(c, t) for c, t in plan.work if (c.index, target_label(t)) not in skip]
        lines: list[tuple[str, int]] = []
        async for result in self.pipeline.run(Plan(plan.job, plan.chunks, work)):
            chunk = plan.chunks[result.index]
            error = {"type": result.error.type, "message": result.error.message} if result.error else None
            raw = chunk_line(
                doc_id, chunk.start, chunk.end, result.index, result.target, result.success, result.result, error
            )
            lines.append((raw.decode().rstrip("\n"), 0 if result.success else 1))
        return lines, ""

    def __del__(self) -> None:
        # An actor ends with its process; close the engines and the client if the loop still runs.
        if getattr(self, "loop", None) is None or not self.loop.is_running():
            return
        # At interpreter exit the loop may already be going away: closing is best effort there.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _close(self) -> None:
        await self.registry.close(drain=False)
        await self.http.aclose()
