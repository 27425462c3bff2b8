"""``chunkserve run`` in-process: documents → pipeline (local engines, remote targets) → JSONL, no HTTP.

Documents are read on a thread, chunked and planned on the event loop, and their (chunk, target) pairs are sent
in slices through ``Pipeline.run`` while a window bounds the pairs in flight: enough to keep the batcher's
length-sorting window full, few enough that memory stays flat and no chunk waits long in the queue.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from service.config import Settings
from service.errors import ChunkserveError
from service.jobs.pipeline import ChunkResult, Pipeline, Plan
from service.jobs.targets import Job, target_label
from service.offline.feed import Feed
from service.offline.options import RunOptions, Summary
from service.offline.ordering import Reorder
from service.offline.progress import Progress, make_progress
from service.offline.reader import BadRecord, Document, count_documents, read_documents
from service.offline.writer import (
    MeanAccumulator,
    OutputIndex,
    ResultWriter,
    aggregate_line,
    chunk_line,
)

log = logging.getLogger("chunkserve.offline")

_FAILURE_NOTES = 10  # failed chunks reported on stderr one by one; the rest are counted (all are in the output)


@dataclass
class _Doc:
    doc: Document
    plan: Plan
    remaining: int
    fresh: bool = False
    means: dict[str, MeanAccumulator] = field(default_factory=dict)
    written: int = 0
    seqs: dict[tuple[int, str], int] = field(default_factory=dict)  # (chunk, target) -> place in --ordered output


class _Window:
    """Counts (chunk, target) pairs in flight; only the producer waits on it."""

    def __init__(self, size: int) -> None:
        self.size, self.used = size, 0
        self._freed = asyncio.Event()

    async def acquire(self, n: int) -> None:
        while self.used and self.used + n > self.size:
            self._freed.clear()
            await self._freed.wait()
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        self._freed.set()


class Runner:
    """Feeds documents through the pipeline within the window and writes every result."""

    def __init__(
        self, options: RunOptions, settings: Settings, pipeline: Pipeline, writer: ResultWriter, index: OutputIndex
    ) -> None:
        self.options, self.settings, self.pipeline, self.writer, self.index = options, settings, pipeline, writer, index
        self.summary = Summary()
        # The batch size each model actually runs with (an unset setting is resolved per device at load time).
        batch = max(
            (engine.max_batch_size for engine in pipeline.registry.engines.values()),
            default=settings.max_batch_size or 8,
        )
        self.batch = batch
        self.window = _Window(options.max_in_flight or settings.batch_window + batch)
        self.piece = max(1, min(self.window.size, batch))
        self.stopped = asyncio.Event()
        self.finished = asyncio.Event()
        self.pieces: set[asyncio.Task[None]] = set()
        self.progress: Progress = make_progress(
            lambda: count_documents(options.inputs, options.output), quiet=options.quiet, stream=options.stderr
        )
        self._flush_due = False
        self._producer_done = False
        self._write_error: OSError | None = None
        # --ordered: results are written in submission order; the window slot is held until the line is written,
        # so the reorder buffer is bounded by max_in_flight too.
        self.reorder = Reorder() if options.ordered else None

    def stop(self, reason: str) -> None:
        if self.summary.interrupted is None:
            self.summary.interrupted = reason
        self.stopped.set()

    async def main(self) -> None:
        feed: Feed[BadRecord | Document] = Feed(
            read_documents(
                self.options.inputs,
                text_field=self.options.text_field,
                id_field=self.options.id_field,
                stdin=self.options.stdin,
                exclude=self.options.output,
            )
        )
        producer = asyncio.create_task(self._produce(feed), name="offline-producer")
        ends = [asyncio.create_task(self.stopped.wait()), asyncio.create_task(self.finished.wait())]
        try:
            pending: set[asyncio.Task[Any]] = {producer, *ends}
            while not (self.stopped.is_set() or self.finished.is_set()):
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if producer.done() and (error := producer.exception()) is not None:
                    raise error
        finally:
            feed.close()
            tasks = [producer, *ends, *self.pieces]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            if self.reorder is not None:
                self.reorder.flush()
            self._flush()
            self.progress.close()
        if self._write_error is not None:
            raise self._write_error

    async def _produce(self, feed: Feed[BadRecord | Document]) -> None:
        while (record := await feed.get()) is not None:
            if isinstance(record, BadRecord):
                self._skip(record.where(), record.reason)
            else:
                await self._submit(record)
        self._producer_done = True
        self._check_finished()

    async def _submit(self, doc: Document) -> None:
        where = doc.source if doc.line is None else f"{doc.source}:{doc.line}"
        if len(doc.text) > self.settings.max_text_chars:
            limit = self.settings.max_text_chars
            self._skip(where, f"document {doc.id!r} has {len(doc.text)} characters; at most {limit} (--max-text-chars)")
            return
        try:
            plan = await self.pipeline.prepare(self._job(doc.text))
        except ChunkserveError as exc:
            self._skip(where, f"document {doc.id!r}: {exc.message}")
            return
        state = _Doc(doc, plan, remaining=0, fresh=not plan.work)
        # In first-use order, not a set's: the mean lines come out in the same order on every run (and on Ray).
        for target in dict.fromkeys(target_label(t) for _, t in plan.work):
            key = (doc.id, target)
            state.means[target] = self.index.partial.pop(key) if key in self.index.partial else MeanAccumulator()
        work = [(c, t) for c, t in plan.work if not self.index.has(doc.id, c.index, target_label(t))]
        state.remaining = len(work)
        if self.reorder is not None:
            state.seqs = {(c.index, target_label(t)): self.reorder.number() for c, t in work}
        if not work:
            if self.reorder is None:
                self._finish(state)
            else:
                self.reorder.arrive(self.reorder.number(), lambda: self._finish(state))
            return
        for i in range(0, len(work), self.piece):
            piece = work[i : i + self.piece]
            await self.window.acquire(len(piece))
            task = asyncio.create_task(self._run_piece(state, Plan(plan.job, plan.chunks, piece)))
            self.pieces.add(task)
            task.add_done_callback(self._piece_done)

    def _job(self, text: str) -> Job:
        o = self.options
        timeout = o.timeout_s if o.timeout_s is not None else self.settings.remote_max_timeout_s
        return Job(text, o.chunking, o.chunk_size, o.overlap, o.targets, o.assignment, timeout)

    async def _run_piece(self, state: _Doc, plan: Plan) -> None:
        held = len(plan.work)
        try:
            async for result in self.pipeline.run(plan):
                held -= 1
                if self.reorder is None:
                    self.window.release(1)
                    self._record(state, result)
                else:
                    seq = state.seqs[(result.index, result.target)]
                    self.reorder.arrive(seq, functools.partial(self._release_and_record, state, result))
        finally:
            self.window.release(held)

    def _release_and_record(self, state: _Doc, result: ChunkResult) -> None:
        self.window.release(1)
        self._record(state, result)

    def _piece_done(self, task: asyncio.Task[None]) -> None:
        self.pieces.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("offline: a slice of work failed", exc_info=task.exception())
            self.stop("error")
        self._check_finished()

    def _check_finished(self) -> None:
        if self._producer_done and not self.pieces:
            self.finished.set()

    def _record(self, state: _Doc, result: ChunkResult) -> None:
        chunk = state.plan.chunks[result.index]
        error = {"type": result.error.type, "message": result.error.message} if result.error else None
        line = chunk_line(
            state.doc.id, chunk.start, chunk.end, result.index, result.target, result.success, result.result, error
        )
        self._write(line)
        state.written += 1
        self.summary.chunks += 1
        acc = state.means.setdefault(result.target, MeanAccumulator())
        if result.success:
            if self.options.aggregate:
                acc.add(result.result)
        else:
            acc.failed += 1
            self.summary.failed_chunks += 1
            if self.summary.failed_chunks <= _FAILURE_NOTES:
                why = f"{result.error.type}: {result.error.message}" if result.error else "unknown error"
                self._note(f"chunk {result.index} of {state.doc.id!r} failed at {result.target}: {why}")
            if self.options.fail_fast:
                self.stop("fail-fast")
        state.remaining -= 1
        if state.remaining == 0:
            self._finish(state)
        self.progress.advance(0, 1)

    def _finish(self, state: _Doc) -> None:
        if self.options.aggregate:
            for target, acc in state.means.items():
                if (state.doc.id, target) in self.index.aggregated:
                    continue
                line = aggregate_line(state.doc.id, target, acc)
                if line is not None:
                    self._write(line)
                    state.written += 1
        if state.written or state.fresh:
            self.summary.documents += 1
        else:
            self.summary.already_done += 1
        self.progress.advance(1, 0)

    def _skip(self, where: str, reason: str) -> None:
        self.summary.skipped += 1
        message = f"skipped {where}: {reason}"
        if len(self.summary.errors) < Summary.MAX_ERRORS:
            self.summary.errors.append(message)
        self._note(message)
        if self.options.fail_fast:
            self.stop("fail-fast")

    def _note(self, message: str) -> None:
        self.progress.note(f"chunkserve run: {message}")

    def _write(self, line: bytes) -> None:
        self.writer.add(line)
        if not self._flush_due:
            # One write per burst: a batch's results all resolve in the same few loop turns.
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        try:
            self.writer.flush()
        except OSError as exc:
            self._write_error = exc
            self.stop("write error")
