"""The OpenAPI schema as served: the security scheme in force, and request examples that work on this server.

Swagger UI's "Authorize" button appears only when the schema declares a scheme, and "Try it out" sends the
credential only to operations that list it; so both follow ``auth_mode``. Examples name the models this
server was configured with, so "Try it out" succeeds as it stands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from models.base import Task
from service.config import Settings

SCHEME = "bearer"
_LONG_TEXT = (
    "Chunkserve splits long texts into chunks. Each chunk goes to a local model or a remote API. "
    "Results come back per chunk, failures included. 长文本也可以。"
)


def _model_for(settings: Settings, task: Task) -> str | None:
    """The id of the first configured model doing ``task`` (or of unknown task: inferred at load time)."""
    entries = settings.model_entries()
    for entry in entries:
        if entry.task is task:
            return entry.id
    return next((e.id for e in entries if e.task is None), None)


def request_examples(settings: Settings) -> dict[str, dict[str, dict[str, Any]]]:
    """Named request-body examples per path, built from the configured models."""
    embed = _model_for(settings, Task.EMBEDDING)
    clf = _model_for(settings, Task.CLASSIFICATION)
    embeddings: dict[str, Any] = {"input": ["first text", "second text"], **({"model": embed} if embed else {})}
    local = {"model": embed or clf} if (embed or clf) else {}
    classic = {"text": _LONG_TEXT, "chunk_size": 100, "chunking": "chars", "api_urls": []}
    mixed = {
        "text": _LONG_TEXT,
        "chunk_size": 80,
        "chunking": "sentences",
        "targets": [
            *([local] if local else []),
            {
                "url": "https://api.example.com/v1",
                "protocol": "openai-chat",
                "model": "gpt-4o-mini",
                "prompt": "Sum up.",
            },
        ],
        "assignment": "round_robin",
    }
    process = {
        "classic": {"summary": "The classic /process/ body", "value": classic},
        "mixed": {"summary": "Mixed targets: a local model and a remote chat API", "value": mixed},
    }
    return {
        "/v1/embeddings": {"openai": {"summary": "OpenAI embeddings", "value": embeddings}},
        "/v1/classify": {
            "classify": {
                "summary": "Classify two texts",
                "value": {
                    "input": ["I loved it", "I hated it"],
                    "return_all_scores": True,
                    **({"model": clf} if clf else {}),
                },
            }
        },
        "/v1/process": process,
        "/process/": process,
        "/v1/process/stream": process,
        "/stream/": process,
        "/predict/": {"classic": {"summary": "Classic /predict/", "value": {"text": _LONG_TEXT}}},
        **tei_examples(settings),
    }


def tei_examples(settings: Settings) -> dict[str, dict[str, dict[str, Any]]]:
    """Request-body examples of the TEI-style routes (each names a model only when one of its task is configured)."""
    embed = _model_for(settings, Task.EMBEDDING)
    clf = _model_for(settings, Task.CLASSIFICATION)
    rerank = _model_for(settings, Task.RERANK)
    texts = {"inputs": ["first text", "second text"], **({"model": embed} if embed else {})}
    return {
        "/embed": {"tei": {"summary": "Pooled, normalised vectors", "value": texts}},
        "/embed_all": {"tei": {"summary": "A vector per token", "value": texts}},
        "/tokenize": {"tei": {"summary": "Tokens with their spans", "value": texts}},
        "/predict": {
            "tei": {
                "summary": "A text and a text pair",
                "value": {"inputs": [["I loved it"], ["I loved it", "It was long"]], **({"model": clf} if clf else {})},
            }
        },
        "/rerank": {
            "tei": {
                "summary": "Rank texts against a query",
                "value": {
                    "query": "What is a panda?",
                    "texts": ["A bear from China.", "A car."],
                    "return_text": True,
                    **({"model": rerank} if rerank else {}),
                },
            }
        },
    }


def security_scheme(settings: Settings) -> dict[str, Any] | None:
    """The OpenAPI security scheme for ``auth_mode``; None when there is no authentication."""
    if settings.auth_mode == "api-key":
        return {"type": "http", "scheme": "bearer", "description": "An API key (CHUNKSERVE_API_KEYS)."}
    if settings.auth_mode == "jwt":
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A signed JWT."}
    return None


def openapi_builder(app: FastAPI, settings: Settings, open_paths: frozenset[str]) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: FastAPI's schema plus the security scheme and the examples, built once."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        scheme = security_scheme(settings)
        if scheme is not None:
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = scheme
        examples = request_examples(settings)
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                if scheme is not None and path not in open_paths:
                    operation["security"] = [{SCHEME: []}]
                body = operation.get("requestBody", {}).get("content", {}).get("application/json")
                if body is not None and path in examples:
                    body["examples"] = examples[path]
        app.openapi_schema = schema
        return schema

    return build
