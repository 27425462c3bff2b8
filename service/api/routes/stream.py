"""``POST /v1/process/stream`` (and the classic ``POST /stream[/]``): results as Server-Sent Events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter
from sse_starlette import EventSourceResponse, ServerSentEvent

from service.api.deps import JOB_SLOT, JobLimitsDep, PipelineDep, SettingsDep
from service.errors import ChunkserveError
from service.jobs.events import job_events
from service.jobs.pipeline import Pipeline, Plan
from service.jobs.targets import job_from_request
from service.schemas import ErrorResponse, ProcessRequest

router = APIRouter(tags=["process"])
log = logging.getLogger("chunkserve.stream")
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 429, 503)
}
_KEEPALIVE_S = 10


async def _sse(pipeline: Pipeline, plan: Plan) -> AsyncIterator[ServerSentEvent]:
    sequence = 0
    try:
        async for event in job_events(pipeline, plan):
            if event.kind == "step":
                continue  # steps are for humans on the WebSocket; SSE readers get progress counts
            sequence += 1
            yield ServerSentEvent(data=orjson.dumps(event.data).decode(), event=event.kind, id=str(sequence))
    except ChunkserveError as exc:
        yield ServerSentEvent(
            data=orjson.dumps({"type": type(exc).__name__, "message": exc.message}).decode(), event="error"
        )
    except Exception:
        log.exception("stream failed mid-way")
        yield ServerSentEvent(
            data='{"type": "internal", "message": "the job failed; see the server log"}', event="error"
        )


@router.post(
    "/v1/process/stream",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    dependencies=[JOB_SLOT],
)
@router.post("/stream/", response_class=EventSourceResponse, responses=_ERRORS, dependencies=[JOB_SLOT])
@router.post("/stream", response_class=EventSourceResponse, dependencies=[JOB_SLOT], include_in_schema=False)
async def process_stream(
    body: ProcessRequest, pipeline: PipelineDep, settings: SettingsDep, limits: JobLimitsDep
) -> EventSourceResponse:
    """Like /v1/process, but each chunk's result is sent as a ``result`` event the moment it finishes.

    Events: ``progress`` (chunked / queued / done counts), ``result`` (one per chunk, completion order, with the
    chunk's ``start`` and ``end``, and its ``text`` with ``include_text: true``),
    ``summary`` (totals, last), ``error`` (if the job fails mid-way). Keep-alive comments when idle.
    Errors found before any work (limits, unknown model, forbidden URL) are ordinary JSON 4xx answers.

    Raises:
        InputTooLarge, ModelNotFound, ForbiddenTarget, InvalidInput, Overloaded: before the stream starts.
        RateLimited: the caller already runs its most jobs at once (the slot is held until the stream ends).
    """
    plan = await pipeline.prepare(job_from_request(body, limits))
    # On shutdown a job in progress runs to its summary; sse-starlette would otherwise cut the stream at once.
    return EventSourceResponse(
        _sse(pipeline, plan),
        ping=_KEEPALIVE_S,
        headers={"X-Accel-Buffering": "no"},
        shutdown_grace_period=settings.shutdown_timeout_s,
    )
