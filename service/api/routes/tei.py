"""TEI-style routes (Hugging Face text-embeddings-inference): /embed, /embed_all, /predict, /rerank, /tokenize, /info.

Same models, batchers and limits as the OpenAI-style routes; errors in TEI's ``{"error", "error_type"}`` shape
(``service/api/tei_errors.py``). Vectors are float32, as on ``/v1/embeddings``.
"""

from __future__ import annotations

import math
from importlib.metadata import PackageNotFoundError, version
from typing import Any, cast

import numpy as np
import orjson
from fastapi import APIRouter
from starlette.responses import Response

from models.base import Classification, Task, Tokenizing
from service.api.deps import RegistryDep, SettingsDep
from service.api.routes.inputs import as_texts
from service.api.routes.tei_models import (
    TeiEmbedAllRequest,
    TeiEmbedRequest,
    TeiPredictRequest,
    TeiRerankRequest,
    TeiTokenizeRequest,
)
from service.errors import InputTooLarge, InvalidInput, WrongTask
from service.inference.engine import ModelEngine
from service.inference.registry import ModelRegistry

router = APIRouter(tags=["tei"])
_ERRORS: dict[int | str, dict[str, object]] = {code: {"description": "TEI error"} for code in (413, 422, 424, 429)}


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def _engine(registry: ModelRegistry, model_id: str | None, task: Task) -> ModelEngine:
    """The model to use: the one named, else the first served for ``task``.

    Raises:
        WrongTask: no model does ``task`` (TEI answers 424 then).
        ModelNotFound: no model has that id.
    """
    if model_id is None and not any(e.task is task for e in registry.engines.values()):
        registry.ensure_accepting()
        raise WrongTask(f"no {task.value} model is served here", field="model")
    return registry.get(model_id, task)


@router.post("/embed", responses=_ERRORS)
async def embed(body: TeiEmbedRequest, registry: RegistryDep, settings: SettingsDep) -> Response:
    """One pooled float32 vector per input: ``[[...], ...]``.

    Raises:
        WrongTask, ModelNotFound, InputTooLarge, InvalidInput, Overloaded: TEI-shaped errors.
    """
    texts = as_texts(body.inputs, settings, field="inputs")
    engine = _engine(registry, body.model, Task.EMBEDDING)
    out = await engine.run(texts, "inputs", truncate=body.truncate, normalize=body.normalize)
    return _json(np.vstack(out.results).astype(np.float32, copy=False))


@router.post("/embed_all", responses=_ERRORS)
async def embed_all(body: TeiEmbedAllRequest, registry: RegistryDep, settings: SettingsDep) -> Response:
    """Every token's float32 vector, unpooled: ``[[[...] per token] per input]``.

    Raises:
        WrongTask, ModelNotFound, InputTooLarge, InvalidInput, Overloaded: TEI-shaped errors.
    """
    texts = as_texts(body.inputs, settings, field="inputs")
    engine = _engine(registry, body.model, Task.EMBEDDING)
    # One vector per token: a full request of long inputs would be gigabytes of JSON. The batch token budget
    # bounds the answer the way it bounds a batch.
    tokens = sum(e.length for e in await engine.encode(texts, "inputs", body.truncate))
    if tokens > settings.max_batch_tokens:
        raise InputTooLarge(
            f"inputs have {tokens} tokens; /embed_all returns a vector per token and takes at most "
            f"{settings.max_batch_tokens} (CHUNKSERVE_MAX_BATCH_TOKENS) per request",
            field="inputs",
        )
    out = await engine.run(texts, "inputs", truncate=body.truncate, all_tokens=True)
    return _json([np.asarray(states, dtype=np.float32) for states in out.results])


def _predictions(result: Classification, raw_scores: bool) -> list[dict[str, Any]]:
    values = result.logits if raw_scores and result.logits is not None else result.scores
    ranked = sorted(values.items(), key=lambda item: -item[1])
    return [{"score": score, "label": label} for label, score in ranked]


def _items(raw: str | list[str] | list[list[str]]) -> tuple[list[list[str]], bool]:
    """The inputs as a batch of singles and pairs, and whether the caller sent one item (a text or a pair)."""
    if isinstance(raw, str):
        return [[raw]], True
    if all(isinstance(x, str) for x in raw):
        return [cast(list[str], raw)], True
    return [list(x) for x in cast(list[list[str]], raw)], False


@router.post("/predict", responses=_ERRORS)
async def predict(body: TeiPredictRequest, registry: RegistryDep, settings: SettingsDep) -> Response:
    """Every label's score, best first, for a text or a pair; a list of those for a batch.

    Raises:
        WrongTask, ModelNotFound, InputTooLarge, InvalidInput, Overloaded: TEI-shaped errors.
    """
    items, single = _items(body.inputs)
    if len(items) > settings.max_inputs_per_request:
        limit = settings.max_inputs_per_request
        raise InputTooLarge(f"inputs has {len(items)} items; at most {limit} per request", field="inputs")
    for i, item in enumerate(items):
        if any(len(text) > settings.max_input_chars for text in item):
            where = "inputs" if single else f"inputs[{i}]"
            raise InputTooLarge(f"{where} is over {settings.max_input_chars} characters", field=where)
    engine = _engine(registry, body.model, Task.CLASSIFICATION)
    results: list[Any] = [None] * len(items)
    singles = [i for i, item in enumerate(items) if len(item) == 1]
    pairs = [i for i, item in enumerate(items) if len(item) == 2]
    if singles:
        out = await engine.run([items[i][0] for i in singles], "inputs", truncate=body.truncate)
        _place(results, singles, out.results, body.raw_scores)
    if pairs:
        out = await engine.run_pairs([(items[i][0], items[i][1]) for i in pairs], "inputs", truncate=body.truncate)
        _place(results, pairs, out.results, body.raw_scores)
    return _json(results[0] if single else results)


def _place(results: list[Any], indices: list[int], outputs: list[Any], raw_scores: bool) -> None:
    for i, result in zip(indices, outputs, strict=True):
        if not isinstance(result, Classification):  # a classification engine gives nothing else
            raise InvalidInput("the model gave no labels", field="model")
        results[i] = _predictions(result, raw_scores)


@router.post("/rerank", responses=_ERRORS)
async def rerank(body: TeiRerankRequest, registry: RegistryDep, settings: SettingsDep) -> Response:
    """Each text's relevance to the query (a cross-encoder's sigmoid score), best first.

    Raises:
        WrongTask, ModelNotFound, InputTooLarge, InvalidInput, Overloaded: TEI-shaped errors.
    """
    texts = as_texts(body.texts, settings, field="texts")
    as_texts(body.query, settings, field="query")
    engine = _engine(registry, body.model, Task.RERANK)
    out = await engine.run_pairs([(body.query, text) for text in texts], "texts", truncate=body.truncate)
    ranks = []
    for index, logit in enumerate(out.results):
        score = float(logit) if body.raw_scores else 1.0 / (1.0 + math.exp(-float(logit)))
        rank: dict[str, Any] = {"index": index, "score": score}
        if body.return_text:
            rank["text"] = texts[index]
        ranks.append(rank)
    ranks.sort(key=lambda r: -r["score"])
    return _json(ranks)


@router.post("/tokenize", responses=_ERRORS)
async def tokenize(body: TeiTokenizeRequest, registry: RegistryDep, settings: SettingsDep) -> Response:
    """How the model tokenizes each input: ``[[{"id", "text", "special", "start", "stop"}, ...], ...]``.

    Raises:
        ModelNotFound, InputTooLarge, InvalidInput: TEI-shaped errors.
    """
    texts = as_texts(body.inputs, settings, field="inputs")
    engine = registry.get(body.model)
    model = engine.model
    if not isinstance(model, Tokenizing):
        raise InvalidInput(f"model {engine.model_id!r} cannot show its tokens", field="model")
    rows = model.tokens(texts, body.add_special_tokens)
    return _json(
        [
            [{"id": t.id, "text": t.text, "special": t.special, "start": t.start, "stop": t.stop} for t in row]
            for row in rows
        ]
    )


def _model_type(engine: ModelEngine, info: dict[str, Any]) -> dict[str, Any]:
    task = engine.task
    if task is Task.EMBEDDING:
        pooling = getattr(engine.model, "pooling", None)
        return {"embedding": {"pooling": str(getattr(pooling, "mode", "mean"))}}
    labels = [str(label) for label in info.get("labels", [])] or ["LABEL_0"]
    classes = {
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "label2id": {label: i for i, label in enumerate(labels)},
    }
    return {"reranker": classes} if task is Task.RERANK else {"classifier": classes}


@router.get("/info")
async def info(registry: RegistryDep, settings: SettingsDep, model: str | None = None) -> Response:
    """TEI's description of the served model (the first one, or ``?model=ID``), plus every served id.

    Raises:
        ModelNotFound, ShuttingDown: TEI-shaped errors.
    """
    engine = registry.get(model)
    details = engine.info()
    try:
        release = version("chunkserve")
    except PackageNotFoundError:
        release = "unknown"
    return _json(
        {
            "model_id": engine.model_id,
            "model_sha": None,
            "model_dtype": details.get("dtype"),
            "model_type": _model_type(engine, details),
            "max_concurrent_requests": settings.max_queue,
            "max_input_length": details.get("max_input_tokens"),
            "max_batch_tokens": settings.max_batch_tokens,
            "max_batch_requests": engine.max_batch_size,
            "max_client_batch_size": settings.max_inputs_per_request,
            "auto_truncate": settings.truncate,
            "tokenization_workers": 1,
            "version": release,
            "models": sorted(registry.engines),
        }
    )
