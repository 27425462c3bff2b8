"""Integration fixtures: a real uvicorn serving tiny random-weight models on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp

from models.base import Task
from service.api.app import create_app
from service.bench.servers.fake_remote import create_fake_remote
from service.config import Settings
from service.inference.model_entry import ModelEntry
from service.outbound.guard import Resolver
from tests.support.servers import running_server


def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    """Poll /ready until 200 (bounded)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = httpx.get(f"{url}/ready", timeout=5, trust_env=False)
        if last.status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"server not ready in {timeout_s}s: {last.text if last else 'no answer'}")


def tiny_settings(tiny_bert_dir: Path, tiny_classifier_dir: Path, **overrides: object) -> Settings:
    """Two tiny models on CPU, one thread, small budgets."""
    values: dict[str, object] = {
        "models": [
            ModelEntry(id="tiny-embed", path=tiny_bert_dir, task=Task.EMBEDDING),
            ModelEntry(id="tiny-clf", path=tiny_classifier_dir, task=Task.CLASSIFICATION),
        ],
        "device": "cpu",
        "torch_threads": 1,
        "max_batch_size": 16,
        "max_wait_ms": 5,
        "max_batch_tokens": 2048,
        "max_inputs_per_request": 64,
        "max_input_chars": 5000,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@contextmanager
def ready_server(app: ASGIApp, *, http: type[asyncio.Protocol] | None = None) -> Iterator[str]:
    """``running_server(app)``, yielded once its ``/ready`` answers 200."""
    with running_server(app, http=http) as url:
        wait_ready(url)
        yield url


@contextmanager
def tiny_server(
    tiny_bert_dir: Path,
    tiny_classifier_dir: Path,
    *,
    resolver: Resolver | None = None,
    http: Callable[[Settings], type[asyncio.Protocol]] | None = None,
    **overrides: object,
) -> Iterator[str]:
    """A ready server of ``tiny_settings(..., **overrides)``; ``http`` makes its uvicorn protocol from the settings."""
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir, **overrides)
    with ready_server(create_app(settings, resolver=resolver), http=None if http is None else http(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def tiny_app(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> FastAPI:
    return create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir))


@pytest.fixture(scope="module")
def tiny_url(tiny_app: FastAPI) -> Iterator[str]:
    with ready_server(tiny_app) as url:
        yield url


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    """A real fake remote AI API on loopback, one per test module (its counters are the module's own)."""
    with running_server(create_fake_remote()) as url:
        yield url
