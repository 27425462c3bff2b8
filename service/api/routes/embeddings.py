"""``POST /v1/embeddings``, OpenAI-compatible."""

from __future__ import annotations

import base64

import numpy as np
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from models.base import Task
from service.api.deps import RegistryDep, SettingsDep
from service.api.disconnect import cancel_on_disconnect
from service.api.routes.inputs import as_texts
from service.errors import InvalidInput
from service.schemas import EmbeddingsRequest, EmbeddingsResponse, ErrorResponse

router = APIRouter(tags=["embeddings"])
_ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (404, 413, 422, 503)}


@router.post("/v1/embeddings", response_model=EmbeddingsResponse, responses=_ERRORS)
async def create_embeddings(
    body: EmbeddingsRequest, request: Request, registry: RegistryDep, settings: SettingsDep
) -> Response:
    """Embed one text or a list of texts; ``data[i]`` belongs to ``input[i]``.

    Raises:
        ModelNotFound, InvalidInput, InputTooLarge, Overloaded, ShuttingDown: mapped in service/api/errors.py.
    """
    texts = as_texts(body.input, settings)
    engine = registry.get(body.model, Task.EMBEDDING)
    dims = int(engine.info().get("dimensions") or 0)
    if body.dimensions is not None and body.dimensions > dims:
        raise InvalidInput(
            f"dimensions must be <= {dims} for model {engine.model_id!r}, got {body.dimensions}",
            field="dimensions",
        )
    # The queue is checked before any tokenizing, and a client that leaves takes its queued inputs with it.
    out = await cancel_on_disconnect(request, engine.run(texts))
    vectors = np.vstack(out.results).astype(np.float32, copy=False)
    if body.dimensions is not None and body.dimensions < dims:
        vectors = vectors[:, : body.dimensions]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    if body.encoding_format == "base64":
        little = vectors.astype("<f4", copy=False)
        data = [
            {"object": "embedding", "index": i, "embedding": base64.b64encode(row.tobytes()).decode()}
            for i, row in enumerate(little)
        ]
    else:
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors)]
    payload = {
        "object": "list",
        "data": data,
        "model": engine.model_id,
        "usage": {"prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens},
    }
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
