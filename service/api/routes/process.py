"""``POST /v1/process`` (and the classic ``POST /process[/]``): chunk a text, process every chunk, report each."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.deps import JOB_SLOT, JobLimitsDep, PipelineDep
from service.api.disconnect import cancel_on_disconnect
from service.jobs.events import chunk_span, result_payload
from service.jobs.pipeline import Plan
from service.jobs.targets import job_from_request
from service.schemas import ErrorResponse, ProcessRequest, ProcessResponse

router = APIRouter(tags=["process"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 429, 503)
}


@router.post("/v1/process", response_model=ProcessResponse, responses=_ERRORS, dependencies=[JOB_SLOT])
@router.post("/process/", response_model=ProcessResponse, responses=_ERRORS, dependencies=[JOB_SLOT])
@router.post("/process", response_model=ProcessResponse, dependencies=[JOB_SLOT], include_in_schema=False)
async def process(body: ProcessRequest, request: Request, pipeline: PipelineDep, limits: JobLimitsDep) -> Response:
    """Split ``text`` into chunks and process each at its target; failures are reported per chunk.

    ``chunks`` gives each chunk's span (``index``, ``start``, ``end``; its text is ``text[start:end]``) and, only
    with ``include_text: true``, its ``text``.

    Raises:
        InputTooLarge, ModelNotFound, ForbiddenTarget, InvalidInput, Overloaded: before any chunk is sent.
        RateLimited: the caller already runs its most jobs at once.
    """
    plan = await pipeline.prepare(job_from_request(body, limits))
    results = await cancel_on_disconnect(request, pipeline.collect(plan))
    ok = sum(r.success for r in results)
    reduced = await cancel_on_disconnect(request, pipeline.reduce(plan, results))
    # ProcessResponse's shape (the schema documents it), built as plain data and written by orjson: a thousand
    # result models validated and serialised again cost more than the rest of the request outside the calls.
    payload = {
        "total": len(results),
        "successful": ok,
        "failed": len(results) - ok,
        "chunks": _chunks(plan),
        "results": [result_payload(r) for r in results],
        "reduce": reduced,
    }
    return Response(_json(payload), media_type="application/json")


def _chunks(plan: Plan) -> list[dict[str, Any]]:
    return [{"index": c.index, **chunk_span(c, plan.job.include_text)} for c in plan.chunks]


def _json(payload: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(payload)
    except TypeError:
        # orjson stops at 64-bit integers; a remote answer may hold a larger one.
        return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
