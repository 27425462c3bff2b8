"""``GET /metrics``: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from service.api.deps import MetricsDep, RegistryDep

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def metrics(registry: RegistryDep, collectors: MetricsDep) -> Response:
    """Every collector, with queue depths read at scrape time."""
    for model_id, engine in registry.engines.items():
        collectors.queue_depth.labels(model_id).set(engine.queue_depth)
    return Response(collectors.render(), media_type=CONTENT_TYPE_LATEST)
