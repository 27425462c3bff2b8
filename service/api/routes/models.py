"""``GET /v1/models``: OpenAI's list, plus task, device, dtype and limits (``context_length`` for generation)."""

from __future__ import annotations

import time

from fastapi import APIRouter

from service.api.deps import RegistryDep
from service.errors import ModelNotFound
from service.schemas import ModelCard, ModelList

router = APIRouter(tags=["models"])
_STARTED = int(time.time())


@router.get("/v1/models", response_model=ModelList)
async def list_models(registry: RegistryDep) -> ModelList:
    """Every served model that has finished loading."""
    cards = [ModelCard(created=_STARTED, **engine.info()) for engine in registry.served()]
    return ModelList(data=cards)


@router.get("/v1/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: str, registry: RegistryDep) -> ModelCard:
    """One model's card.

    Raises:
        ModelNotFound: no such model.
    """
    engine = registry.engines.get(model_id) or registry.generators.get(model_id)
    if engine is None:
        raise ModelNotFound(f"model {model_id!r} does not exist", field="model")
    return ModelCard(created=_STARTED, **engine.info())
