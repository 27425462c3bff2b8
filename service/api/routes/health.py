"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.api.deps import RegistryDep
from service.inference.registry import Phase
from service.schemas import HealthResponse

router = APIRouter(tags=["health"])


def _json(status: int, body: HealthResponse) -> Response:
    headers = {"Retry-After": "5"} if status == 503 else None
    return Response(body.model_dump_json(), status_code=status, media_type="application/json", headers=headers)


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def health(registry: RegistryDep) -> Response:
    """Liveness: 200 while the process can serve or is still loading; 503 when start-up failed."""
    if registry.phase is Phase.FAILED:
        return _json(503, HealthResponse(status="failed", detail=registry.failure))
    return _json(200, HealthResponse(status="ok"))


@router.get("/ready", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def ready(registry: RegistryDep) -> Response:
    """Readiness: 200 only when every model is loaded and warmed and every batcher runs."""
    ok, detail = registry.readiness()
    return _json(200 if ok else 503, HealthResponse(status="ready" if ok else "unavailable", detail=detail))
