"""``POST /v1/process`` (and the classic ``POST /process/``): chunk a text, process every chunk, report each."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.deps import JOB_SLOT, PipelineDep, SettingsDep
from service.api.disconnect import cancel_on_disconnect
from service.chunking import Strategy
from service.config import Settings
from service.errors import InputTooLarge
from service.pipeline import Assignment, Job, LocalTarget, Target
from service.remote import RemoteProtocol, RemoteTarget
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


def job_from_request(body: ProcessRequest, settings: Settings) -> Job:
    """Check the request's size limits and turn it into a pipeline job.

    Raises:
        InputTooLarge: the text or the target list is over its limit.
    """
    if len(body.text) > settings.max_text_chars:
        raise InputTooLarge(f"text has {len(body.text)} characters; at most {settings.max_text_chars}", field="text")
    targets: list[Target] = [RemoteTarget(url=url) for url in body.api_urls]
    for spec in body.targets:
        if spec.url is None:
            assert spec.model is not None
            targets.append(LocalTarget(model=spec.model))
        else:
            targets.append(
                RemoteTarget(
                    url=spec.url,
                    protocol=RemoteProtocol(spec.protocol),
                    model=spec.model,
                    prompt=spec.prompt,
                    headers=tuple(spec.headers.items()),
                )
            )
    if len(targets) > settings.max_targets:
        raise InputTooLarge(f"{len(targets)} targets; at most {settings.max_targets}", field="targets")
    return Job(
        text=body.text,
        chunking=Strategy(body.chunking),
        chunk_size=body.chunk_size,
        overlap=body.overlap,
        targets=tuple(targets),
        assignment=Assignment(body.assignment),
        timeout_s=body.timeout_s if body.timeout_s is not None else settings.remote_timeout_s,
    )


@router.post("/v1/process", response_model=ProcessResponse, responses=_ERRORS, dependencies=[JOB_SLOT])
@router.post("/process/", response_model=ProcessResponse, responses=_ERRORS, dependencies=[JOB_SLOT])
async def process(
    body: ProcessRequest, request: Request, pipeline: PipelineDep, settings: SettingsDep
) -> ProcessResponse:
    """Split ``text`` into chunks and process each at its target; failures are reported per chunk.

    Raises:
        InputTooLarge, ModelNotFound, ForbiddenTarget, InvalidInput, Overloaded: before any chunk is sent.
        RateLimited: the caller already runs its most jobs at once.
    """
    plan = await pipeline.prepare(job_from_request(body, settings))
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
