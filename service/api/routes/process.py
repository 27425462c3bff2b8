"""``POST /v1/process`` (and the classic ``POST /process[/]``): chunk a text, process every chunk, report each."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.deps import JOB_SLOT, JobLimitsDep, PipelineDep
from service.api.disconnect import cancel_on_disconnect
from service.jobs.targets import job_from_request
from service.schemas import (
    ChunkError,
    ChunkInfo,
    ChunkResultModel,
    ErrorResponse,
    ProcessRequest,
    ProcessResponse,
)

router = APIRouter(tags=["process"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 429, 503)
}


@router.post("/v1/process", response_model=ProcessResponse, responses=_ERRORS, dependencies=[JOB_SLOT])
@router.post("/process/", response_model=ProcessResponse, responses=_ERRORS, dependencies=[JOB_SLOT])
@router.post("/process", response_model=ProcessResponse, dependencies=[JOB_SLOT], include_in_schema=False)
async def process(
    body: ProcessRequest, request: Request, pipeline: PipelineDep, limits: JobLimitsDep
) -> ProcessResponse:
    """Split ``text`` into chunks and process each at its target; failures are reported per chunk.

    Raises:
        InputTooLarge, ModelNotFound, ForbiddenTarget, InvalidInput, Overloaded: before any chunk is sent.
        RateLimited: the caller already runs its most jobs at once.
    """
    plan = await pipeline.prepare(job_from_request(body, limits))
    results = await cancel_on_disconnect(request, pipeline.collect(plan))
    ok = sum(r.success for r in results)
    return ProcessResponse(
        total=len(results),
        successful=ok,
        failed=len(results) - ok,
        chunks=[ChunkInfo(index=c.index, start=c.start, end=c.end, text=c.text) for c in plan.chunks],
        results=[
            ChunkResultModel(
                index=r.index,
                target=r.target,
                success=r.success,
                result=r.result,
                error=ChunkError(type=r.error.type, message=r.error.message) if r.error else None,
                latency_ms=r.latency_ms,
                attempts=r.attempts,
            )
            for r in results
        ],
    )
