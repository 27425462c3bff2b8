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

import numpy as np
import orjson

from service.config import Settings
from service.errors import ChunkserveError
from service.inference.registry import ModelRegistry, Phase
from service.jobs.chunking import Strategy
from service.jobs.pipeline import Plan
from service.jobs.targets import Assignment, Job, LocalTarget, Target, target_label
from service.observability.metrics import Metrics
from service.offline.writer import MeanAccumulator, OutputIndex, aggregate_line, chunk_line
from service.runtime import build_pipeline, default_loader, load_engines

T = TypeVar("T")
# What each output row is: a chunk line, a mean line, a skipped document (note), the end of a document processed
# now, or of one that was already complete in the output (--resume).
CHUNK, MEAN, SKIP, NEW, OLD = "chunk", "mean", "skip", "new", "old"
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
    aggregate: bool = False

    def job(self, text: str) -> Job:
        """The job for one document's text."""
        return Job(text, self.chunking, self.chunk_size, self.overlap, self.targets, self.assignment, self.timeout_s)


def done_keys(pairs: list[list[Any]]) -> set[tuple[int, str]]:
    """The (chunk, target) pairs of a document already in the output, as sent in a row's ``done`` field."""
    return {(int(chunk), str(target)) for chunk, target in pairs}


def pack_means(index: OutputIndex) -> dict[str, str]:
    """Per document, what ``--aggregate --resume`` carries over from the output: a row's ``means`` field.

    JSON ``{"aggregated": [target, ...], "partial": {target: [sum, count, failed, usable]}}``: the targets whose
    mean line is written already, and the running sums of the chunk results read back for the others.
    """
    docs: dict[str, dict[str, Any]] = {}
    for doc_id, target in index.aggregated:
        docs.setdefault(doc_id, {"aggregated": [], "partial": {}})["aggregated"].append(target)
    for (doc_id, target), acc in index.partial.items():
        total = None if acc.total is None else acc.total.tolist()
        docs.setdefault(doc_id, {"aggregated": [], "partial": {}})["partial"][target] = [
            total,
            acc.count,
            acc.failed,
            acc.usable,
        ]
    return {doc_id: orjson.dumps(packed).decode() for doc_id, packed in docs.items()}


def unpack_means(packed: str) -> tuple[set[str], dict[str, MeanAccumulator]]:
    """A row's ``means`` field back as (targets already aggregated, running sums by target)."""
    if not packed:
        return set(), {}
    data = orjson.loads(packed)
    partial = {
        target: MeanAccumulator(None if total is None else np.asarray(total, dtype=np.float64), count, failed, usable)
        for target, (total, count, failed, usable) in data["partial"].items()
    }
    return set(data["aggregated"]), partial


class ChunkWorker:
    """``map_batches`` callable class: rows ``{id, text, done, means}`` in, rows ``{kind, line, note, failed}`` out.

    Per document, in the order of the batch: its chunk lines (``CHUNK``, in the order ``chunkserve run --ordered``
    writes them; ``failed`` 1 for a failed result), then its mean lines (``MEAN``, with ``--aggregate``), then one
    row that ends it: ``NEW`` or ``OLD`` (complete in the output already), or ``SKIP`` with the reason in ``note``.
    ``line`` is one output JSONL line without its newline, empty in the rows that end a document.
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
        means = batch["means"] if "means" in batch else [""] * len(batch["id"])
        docs = zip(batch["id"], batch["text"], batch["done"], means, strict=True)
        answers = await asyncio.gather(*(self._document(str(i), str(t), str(d), str(m)) for i, t, d, m in docs))
        out: dict[str, list[Any]] = {"kind": [], "line": [], "note": [], "failed": []}
        for rows in answers:
            for kind, line, note, failed in rows:
                out["kind"].append(kind)
                out["line"].append(line)
                out["note"].append(note)
                out["failed"].append(failed)
        return out

    async def _document(self, doc_id: str, text: str, done: str, means: str) -> list[tuple[str, str, str, int]]:
        """One document's rows (see the class): what ``Runner._submit``, ``_record`` and ``_finish`` write."""
        if len(text) > self.settings.max_text_chars:
            limit = self.settings.max_text_chars
            note = f"document {doc_id!r} has {len(text)} characters; at most {limit} (--max-text-chars)"
            return [(SKIP, "", note, 0)]
        try:
            plan = await self.pipeline.prepare(self.spec.job(text))
        except ChunkserveError as exc:
            return [(SKIP, "", f"document {doc_id!r}: {exc.message}", 0)]
        skip = done_keys(orjson.loads(done))
        aggregated, partial = unpack_means(means)
        sums = {target: partial.get(target, MeanAccumulator()) for target in _targets(plan.work)}
        work = [(c, t) for c, t in plan.work if (c.index, target_label(t)) not in skip]
        place = {(c.index, target_label(t)): i for i, (c, t) in enumerate(work)}
        results = [result async for result in self.pipeline.run(Plan(plan.job, plan.chunks, work))]
        results.sort(key=lambda r: place[(r.index, r.target)])  # the order --ordered writes them in
        rows: list[tuple[str, str, str, int]] = []
        for result in results:
            chunk = plan.chunks[result.index]
            error = {"type": result.error.type, "message": result.error.message} if result.error else None
            raw = chunk_line(
                doc_id, chunk.start, chunk.end, result.index, result.target, result.success, result.result, error
            )
            rows.append((CHUNK, raw.decode().rstrip("\n"), "", 0 if result.success else 1))
            acc = sums.setdefault(result.target, MeanAccumulator())
            if not result.success:
                acc.failed += 1
            elif self.spec.aggregate:
                acc.add(result.result)
        if self.spec.aggregate:
            for target, acc in sums.items():
                line = None if target in aggregated else aggregate_line(doc_id, target, acc)
                if line is not None:
                    rows.append((MEAN, line.decode().rstrip("\n"), "", 0))
        rows.append((NEW if rows or not plan.work else OLD, "", "", 0))
        return rows

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


def _targets(work: list[tuple[Any, Target]]) -> list[str]:
    """The targets of a plan's work, in first-use order (as ``chunkserve run`` writes its mean lines)."""
    return list(dict.fromkeys(target_label(t) for _, t in work))
