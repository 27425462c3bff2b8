"""``GET /metrics``: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from service.api.deps import MetricsDep, RegistryDep
from service.inference.registry import ModelRegistry
from service.observability.metrics import Metrics

router = APIRouter(tags=["health"])


def refresh_queue_depths(registry: ModelRegistry, collectors: Metrics) -> None:
    """Copy each batcher's queue depth into its gauge (read at scrape time, not kept up to date)."""
    for model_id, engine in registry.engines.items():
        collectors.queue_depth.labels(model_id).set(engine.queue_depth)


@router.get("/metrics", response_class=Response)
async def metrics(registry: RegistryDep, collectors: MetricsDep) -> Response:
    """Every collector, with queue depths read at scrape time."""
    refresh_queue_depths(registry, collectors)
    return Response(collectors.render(), media_type=CONTENT_TYPE_LATEST)
