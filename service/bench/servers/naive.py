"""The naive baseline for ``bench --baseline naive``: the FastAPI server a user writes from a tutorial.

It loads the same models chunkserve would (``CHUNKSERVE_MODELS``, else the packaged default) and runs each request's
inputs through the model inside the request handler, one request at a time: no queue, no batching across requests,
no length sorting. ``python -m service.bench.servers.naive --host H --port P``.
"""

from __future__ import annotations

import argparse
import base64
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from models.base import Classification, Model, Task
from models.loading import LoadOptions
from service.config import Settings
from service.inference.engine import set_torch_threads
from service.runtime import default_loader, effective_threads


class _Body(BaseModel):
    input: str | list[str] = Field(min_length=1)
    model: str | None = None
    encoding_format: str = "float"


def _texts(body: _Body) -> list[str]:
    return [body.input] if isinstance(body.input, str) else body.input


def _pick(models: dict[str, Model], name: str | None, task: Task) -> Model:
    found = next((m for m in models.values() if m.task == task), None) if name is None else models.get(name)
    if found is None or found.task != task:
        raise HTTPException(404, f"model {name!r}: no {task.value} model by that id")
    return found


def create_naive_app(models: dict[str, Model]) -> FastAPI:
    """The tutorial server over already loaded ``models``."""
    app = FastAPI(title="naive baseline")

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    # ``async def`` with the model called inline, as tutorials do: the event loop runs one request's model call at a
    # time, on one thread (so one torch thread pool), and nothing is batched across requests.
    @app.post("/v1/embeddings")
    async def embeddings(body: _Body) -> dict[str, Any]:
        model = _pick(models, body.model, Task.EMBEDDING)
        encoded = model.encode(_texts(body))
        vectors = model.predict(encoded)
        data: list[dict[str, Any]] = []
        for i, vector in enumerate(vectors):
            array = np.asarray(vector, dtype=np.float32)
            value: Any = (
                base64.b64encode(array.tobytes()).decode() if body.encoding_format == "base64" else array.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(e.length for e in encoded)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": body.model or "", "usage": usage}

    @app.post("/v1/classify")
    async def classify(body: _Body) -> dict[str, Any]:
        model = _pick(models, body.model, Task.CLASSIFICATION)
        encoded = model.encode(_texts(body))
        results: list[Classification] = model.predict(encoded)
        data = [{"index": i, "label": r.label, "score": r.score} for i, r in enumerate(results)]
        tokens = sum(e.length for e in encoded)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": body.model or "", "usage": usage}

    return app


def load_models(settings: Settings) -> dict[str, Model]:
    """Every configured model, loaded and warmed up on this thread with chunkserve's thread count."""
    set_torch_threads(effective_threads(settings))
    options = LoadOptions(device=settings.device, dtype=settings.dtype)
    return {entry.id: default_loader(entry, options) for entry in settings.model_entries()}


def main() -> None:
    """Serve the naive baseline until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m service.bench.servers.naive", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    app = create_naive_app(load_models(Settings()))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
