"""The classic ``POST /predict/``: a text cut into chunks of 100 characters, each classified by the default model.

It is an ordinary pipeline job (one local target, ``chars`` chunking), so it goes through the same checks,
batcher and metrics as ``/v1/process``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from models.base import Task
from service.api.deps import JOB_SLOT, JobLimitsDep, PipelineDep, RegistryDep
from service.api.disconnect import cancel_on_disconnect
from service.errors import (
    BatchFailed,
    ChunkserveError,
    DeadlineExceeded,
    InputTooLarge,
    ModelNotFound,
    Overloaded,
    ShuttingDown,
)
from service.jobs.chunking import Strategy
from service.jobs.pipeline import ChunkResult
from service.jobs.targets import Job, LocalTarget
from service.schemas import ErrorResponse, Prediction, PredictRequest, PredictResponse

router = APIRouter(tags=["classification"])
CHUNK_CHARS = 100
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 429, 500, 503, 504)
}
_NO_MODEL = (
    "/predict/ needs a classification model and none is served; start the server with one, e.g. "
    "--model sst2=/models/distilbert-sst2:classification (or CHUNKSERVE_MODELS=sst2=/path:classification)"
)


def _failure(result: ChunkResult) -> ChunkserveError:
    """The error a failed chunk stands for (the whole prediction fails with it)."""
    kind, message = (result.error.type, result.error.message) if result.error else ("model_error", "failed")
    if kind == "timeout":
        return DeadlineExceeded(f"chunk {result.index}: {message}")
    if kind == Overloaded.__name__:
        return Overloaded(f"chunk {result.index}: {message}")
    if kind == ShuttingDown.__name__:
        return ShuttingDown(message)
    return BatchFailed(f"chunk {result.index}: {message}")


@router.post("/predict/", response_model=PredictResponse, responses=_ERRORS, dependencies=[JOB_SLOT])
async def predict(
    body: PredictRequest, request: Request, pipeline: PipelineDep, registry: RegistryDep, limits: JobLimitsDep
) -> PredictResponse:
    """Classify ``text`` in chunks of 100 characters with the first classification model served.

    Raises:
        ModelNotFound: no classification model is served (404, naming what to configure).
        InputTooLarge, Overloaded, ShuttingDown: before any chunk is sent.
        DeadlineExceeded, BatchFailed: a chunk failed (the answer would be incomplete).
    """
    if len(body.text) > limits.max_text_chars:
        raise InputTooLarge(f"text has {len(body.text)} characters; at most {limits.max_text_chars}", field="text")
    try:
        engine = registry.get(None, Task.CLASSIFICATION)
    except ModelNotFound:
        raise ModelNotFound(_NO_MODEL, field="model") from None
    job = Job(
        text=body.text,
        chunking=Strategy.CHARS,
        chunk_size=CHUNK_CHARS,
        targets=(LocalTarget(engine.model_id),),
        timeout_s=limits.default_timeout_s,
    )
    plan = await pipeline.prepare(job)
    results = await cancel_on_disconnect(request, pipeline.collect(plan))
    spans = {c.index: c for c in plan.chunks}
    predictions = []
    for result in results:
        if not result.success or not isinstance(result.result, dict):
            raise _failure(result)
        chunk = spans[result.index]
        predictions.append(
            Prediction(
                index=result.index,
                start=chunk.start,
                end=chunk.end,
                label=result.result["label"],
                score=result.result["score"],
                scores=result.result["scores"],
            )
        )
    return PredictResponse(model=engine.model_id, predictions=predictions)
