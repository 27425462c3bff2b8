"""``create_app(settings)``: the FastAPI application and the lifespan that owns models and batchers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from models.base import LoadRefused
from service.api.access_log import AccessLogMiddleware
from service.api.auth import AuthMiddleware, access_from_settings
from service.api.cors import install_cors
from service.api.docs import install_docs
from service.api.errors import install_error_handlers
from service.api.limits import BodyLimitMiddleware
from service.api.middleware import RequestIdMiddleware
from service.api.openapi import openapi_builder
from service.api.routes import classify, completions, embeddings, health, predict, process, stream, tei, ws
from service.api.routes import metrics as metrics_route
from service.api.routes import models as models_route
from service.api.routes.dashboard import install_dashboard
from service.config import Settings
from service.inference.registry import ModelRegistry, Phase
from service.jobs.pipeline import Resolver
from service.observability.metrics import LiveMetric, Metrics
from service.runtime import Loader, build_pipeline, live_metrics, load_engines, local_loader
from service.shutdown import Drain

log = logging.getLogger("chunkserve")


def create_app(
    settings: Settings,
    *,
    loader: Loader = local_loader,
    on_fatal: Callable[[str], None] | None = None,
    on_loaded: Callable[[], None] | None = None,
    resolver: Resolver | None = None,
) -> FastAPI:
    """Build the application; nothing is loaded until its lifespan starts.

    Models load in the background so ``/health`` answers at once and ``/ready`` says when they are warm.
    ``on_fatal`` is told when start-up fails (the CLI stops the server then; tests read ``/health``);
    ``on_loaded`` when every model is ready (the CLI freezes the heap then).
    ``resolver`` replaces DNS for outbound calls (tests). ``app.state.drain`` is what a signal handler begins.

    Raises:
        ValueError: unusable credentials settings (refused before anything loads or binds).
    """
    drain = Drain()
    access = access_from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        registry = ModelRegistry(expected=[m.id for m in settings.model_entries()])
        metrics = Metrics()
        pipeline, http = build_pipeline(settings, registry, resolver)
        app.state.registry, app.state.metrics, app.state.pipeline = registry, metrics, pipeline
        metrics.watch(lambda: live_metrics(registry, pipeline))
        metrics.watch(lambda: [_jobs_in_flight(access.slots.total)])
        drain.bind()
        drain.on_begin(registry.begin_draining)
        # SecretStr fields dump as "**********": the settings line never carries a key.
        log.info("starting", extra={"fields": {"settings": settings.model_dump(mode="json")}})

        async def load() -> None:
            try:
                await load_engines(settings, registry, loader, metrics)
            except Exception as exc:
                registry.phase, registry.failure = Phase.FAILED, f"{type(exc).__name__}: {exc}"
                # With its traceback (where it failed), unless the model was refused on purpose: its message says all.
                log.error(
                    "start-up failed: %s",
                    registry.failure,
                    exc_info=not isinstance(exc, LoadRefused),
                    extra={"fields": {"error": registry.failure}},
                )
                if on_fatal is not None:
                    on_fatal(registry.failure)
                return
            if on_loaded is not None:
                on_loaded()

        loading = asyncio.create_task(load(), name="load-models")
        try:
            yield {
                "registry": registry,
                "settings": settings,
                "metrics": metrics,
                "pipeline": pipeline,
                "drain": drain,
                "access": access,
            }
        finally:
            drain.begin()
            if not loading.done():
                loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await registry.close(drain=True)
            await http.aclose()

    app = FastAPI(
        title="chunkserve",
        version="0.1.0",
        description="Chunk long texts; run local models behind a micro-batcher; OpenAI-compatible.",
        lifespan=lifespan,
        debug=False,
        docs_url=None,  # served by install_docs from the package's assets, not from a CDN
        redoc_url=None,
    )
    app.openapi = openapi_builder(app, settings, access.open_paths)  # type: ignore[method-assign]
    install_error_handlers(app)
    # Outermost last: CORS, then the request id, then the body limit, then authentication.
    app.add_middleware(AuthMiddleware, access=access)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        timeout_s=settings.body_timeout_s,
        min_bytes_per_s=settings.body_min_bytes_per_s,
    )
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(AccessLogMiddleware)
    app.state.drain = drain
    app.state.access = access  # the quotas, for operators' tools and tests (requests get them from the lifespan)
    install_cors(app, settings)
    for module in (
        health,
        metrics_route,
        models_route,
        embeddings,
        classify,
        completions,
        predict,
        process,
        stream,
        ws,
        tei,
    ):
        app.include_router(module.router)
    install_docs(app)
    install_dashboard(app)
    return app


def _jobs_in_flight(total: int) -> LiveMetric:
    return LiveMetric(
        "chunkserve_jobs_in_flight",
        "Jobs running now (/v1/process, its stream, /predict/, WebSocket jobs), all callers together.",
        (),
        {(): float(total)},
        kind="gauge",
    )
