"""Errors on the TEI-style routes in the shape text-embeddings-inference answers: ``{"error", "error_type"}``.

Status codes follow TEI's OpenAPI where it documents them: 413 over a limit, 422 invalid input, 424 a model that
does another task or failed, 429 overloaded; the rest keep chunkserve's codes.
"""

from __future__ import annotations

import math

import orjson
from starlette.requests import Request
from starlette.responses import Response

from service.errors import (
    BatchFailed,
    ChunkserveError,
    InputTooLarge,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    RateLimited,
    ShuttingDown,
    WrongTask,
)

TEI_PATHS = frozenset({"/embed", "/embed_all", "/predict", "/rerank", "/tokenize", "/info"})

# Most specific first, as in service/api/errors.py.
_TABLE: list[tuple[type[ChunkserveError], int, str]] = [
    (WrongTask, 424, "backend"),
    (InputTooLarge, 413, "validation"),
    (InvalidInput, 422, "validation"),
    (ModelNotFound, 404, "validation"),
    (Overloaded, 429, "overloaded"),
    (RateLimited, 429, "overloaded"),
    (ShuttingDown, 503, "unhealthy"),
    (BatchFailed, 424, "backend"),
]


def is_tei(request: Request) -> bool:
    """Whether the request came in on a TEI-style route."""
    return request.url.path in TEI_PATHS


def tei_error(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> Response:
    """One TEI error body."""
    body = orjson.dumps({"error": message, "error_type": error_type})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def tei_domain_error(exc: ChunkserveError) -> Response:
    """A domain error as TEI would answer it (with Retry-After where a retry helps)."""
    status, error_type = next(((s, t) for cls, s, t in _TABLE if isinstance(exc, cls)), (500, "backend"))
    headers = None
    if isinstance(exc, Overloaded | RateLimited):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    elif isinstance(exc, ShuttingDown):
        headers = {"Retry-After": "5"}
    return tei_error(status, exc.message, error_type, headers)
