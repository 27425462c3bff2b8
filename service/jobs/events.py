"""A job as a stream of typed events (progress, result, summary): what SSE and WebSocket both send."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from service.jobs.chunking import Chunk
from service.jobs.pipeline import ChunkResult, Pipeline, Plan
from service.jobs.targets import target_label


@dataclass(frozen=True, slots=True)
class Event:
    """One message of a job: ``kind`` is progress | result | reduce | summary | step."""

    kind: str
    data: dict[str, Any]


def result_payload(result: ChunkResult) -> dict[str, Any]:
    """A chunk result as JSON-ready data."""
    return {
        "index": result.index,
        "target": result.target,
        "success": result.success,
        "result": result.result,
        "error": {"type": result.error.type, "message": result.error.message} if result.error else None,
        "latency_ms": result.latency_ms,
        "attempts": result.attempts,
    }


def chunk_span(chunk: Chunk, include_text: bool) -> dict[str, Any]:
    """Where a chunk lies in the request's text (code points); its text too only when the caller asked for it."""
    span: dict[str, Any] = {"start": chunk.start, "end": chunk.end}
    if include_text:  # off by default: the caller sent the text, and a large fan-out would get it back twice
        span["text"] = chunk.text
    return span


async def job_events(pipeline: Pipeline, plan: Plan, *, progress_every_s: float = 0.25) -> AsyncIterator[Event]:
    """Progress at the start, each result as it completes (with progress at most every ``progress_every_s``),
    then a summary. Closing the iterator early cancels the job's outstanding work."""
    started = time.perf_counter()
    total = len(plan.work)
    targets = sorted({target_label(t) for _, t in plan.work})
    yield Event("step", {"step": "chunked", "message": f"chunked into {len(plan.chunks)} chunks"})
    yield Event(
        "step",
        {"step": "dispatched", "message": f"dispatched {total} calls to {len(targets)} target(s)", "targets": targets},
    )
    yield Event("progress", {"chunked": len(plan.chunks), "queued": total, "done": 0, "failed": 0})
    chunks = {c.index: c for c in plan.chunks}
    include_text = plan.job.include_text
    done = failed = 0
    order = {(c.index, target_label(t)): i for i, (c, t) in enumerate(plan.work)}
    collected: list[ChunkResult] = []
    last_progress = time.perf_counter()
    results = pipeline.run(plan)
    try:
        async for result in results:
            done += 1
            failed += not result.success
            if plan.job.reduce is not None:
                collected.append(result)
            # The chunk's span in the text, so a client can show where each result belongs as it arrives.
            yield Event("result", {**result_payload(result), **chunk_span(chunks[result.index], include_text)})
            now = time.perf_counter()
            if now - last_progress >= progress_every_s and done < total:
                last_progress = now
                yield Event(
                    "progress", {"chunked": len(plan.chunks), "queued": total - done, "done": done, "failed": failed}
                )
    finally:
        await results.aclose()
    yield Event("progress", {"chunked": len(plan.chunks), "queued": 0, "done": done, "failed": failed})
    if plan.job.reduce is not None:
        collected.sort(key=lambda r: order[(r.index, r.target)])
        yield Event("step", {"step": "reduce", "message": f"combining {len(collected)} results"})
        yield Event("reduce", await pipeline.reduce(plan, collected) or {})
    yield Event(
        "summary",
        {
            "total": total,
            "successful": done - failed,
            "failed": failed,
            "chunks": len(plan.chunks),
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
