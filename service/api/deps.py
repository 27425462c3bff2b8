"""Typed dependencies so that routes read like prose: ``registry: RegistryDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.metrics import Metrics
from service.pipeline import Pipeline
from service.registry import ModelRegistry


def get_registry(request: Request) -> ModelRegistry:
    """The model registry the lifespan put in the request state."""
    registry: ModelRegistry = request.state.registry
    return registry


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus collectors."""
    metrics: Metrics = request.state.metrics
    return metrics


def get_pipeline(request: Request) -> Pipeline:
    """The chunk pipeline (local engines + remote client)."""
    pipeline: Pipeline = request.state.pipeline
    return pipeline


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
