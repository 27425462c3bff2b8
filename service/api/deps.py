"""Typed dependencies so that routes read like prose: ``registry: RegistryDep``.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency on a worker thread, and two such hops
per request (a queue put, a thread wake-up, a call back into the loop) showed up in the event loop's profile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from service.api.auth import Access
from service.config import Settings
from service.inference.registry import ModelRegistry
from service.jobs.pipeline import Pipeline
from service.jobs.targets import JobLimits
from service.observability.metrics import Metrics
from service.runtime import job_limits
from service.security.verify import Principal


async def get_registry(request: Request) -> ModelRegistry:
    """The model registry the lifespan put in the request state."""
    registry: ModelRegistry = request.state.registry
    return registry


async def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus collectors."""
    metrics: Metrics = request.state.metrics
    return metrics


async def get_pipeline(request: Request) -> Pipeline:
    """The chunk pipeline (local engines + remote client)."""
    pipeline: Pipeline = request.state.pipeline
    return pipeline


async def get_job_limits(request: Request) -> JobLimits:
    """The limits a request is checked against while it becomes a job."""
    settings: Settings = request.state.settings
    return job_limits(settings)


async def get_principal(request: Request) -> Principal:
    """The caller, authenticated by ``AuthMiddleware`` before the route was reached."""
    principal: Principal = request.state.principal
    return principal


async def hold_job_slot(request: Request) -> AsyncIterator[None]:
    """One of the caller's running-job slots, held until the answer (a whole stream, too) has been sent.

    Raises:
        RateLimited: the caller already runs as many jobs as it may.
    """
    access: Access = request.state.access
    principal: Principal = request.state.principal
    with access.slots.hold(principal.key):
        yield


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
JobLimitsDep = Annotated[JobLimits, Depends(get_job_limits)]
JOB_SLOT = Depends(hold_job_slot)
