"""``POST /v1/classify``: a label and a score per input."""

from __future__ import annotations

from fastapi import APIRouter, Request

from models.base import Classification, Task
from service.api.deps import RegistryDep, SettingsDep
from service.api.disconnect import cancel_on_disconnect
from service.api.routes.inputs import as_texts
from service.schemas import ClassificationItem, ClassifyRequest, ClassifyResponse, ErrorResponse, Usage

router = APIRouter(tags=["classification"])
_ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (404, 413, 422, 503)}


@router.post("/v1/classify", response_model=ClassifyResponse, responses=_ERRORS)
async def classify(
    body: ClassifyRequest, request: Request, registry: RegistryDep, settings: SettingsDep
) -> ClassifyResponse:
    """Classify one text or a list; ``data[i]`` belongs to ``input[i]``.

    Raises:
        ModelNotFound, InvalidInput, InputTooLarge, Overloaded, ShuttingDown: mapped in service/api/errors.py.
    """
    texts = as_texts(body.input, settings)
    engine = registry.get(body.model, Task.CLASSIFICATION)
    # The queue is checked before any tokenizing, and a client that leaves takes its queued inputs with it.
    out = await cancel_on_disconnect(request, engine.run(texts))
    items = []
    for i, result in enumerate(out.results):
        if not isinstance(result, Classification):
            raise TypeError(f"model {engine.model_id!r} returned {type(result).__name__}, not a classification")
        items.append(
            ClassificationItem(
                index=i,
                label=result.label,
                score=result.score,
                scores=dict(result.scores) if body.return_all_scores else None,
            )
        )
    usage = Usage(prompt_tokens=out.prompt_tokens, total_tokens=out.prompt_tokens)
    return ClassifyResponse(data=items, model=engine.model_id, usage=usage)
