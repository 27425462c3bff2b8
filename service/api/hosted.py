"""The app for an ASGI host that runs its lifespan itself (Ray Serve): state passed on, start-up held until warm.

``chunkserve serve`` answers ``/ready`` 503 while loading; a Ray replica instead stays "starting" (no traffic) until
the lifespan's start-up returns, so here the start-up ends only once the models are warm, and a failed start-up
fails the replica with its reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from service.api.app import create_app
from service.config import Settings
from service.inference.registry import ModelRegistry, Phase


class HostedApp:
    """``create_app(settings)`` as an ASGI app whose host does not pass the lifespan's state on to requests.

    Ray Serve runs the app's lifespan but gives each request a fresh state, and every route reads the registry,
    settings and pipeline from ``request.state``: this copies the lifespan's state in, as uvicorn does.
    """

    def __init__(self, settings: Settings, *, warm_timeout_s: float) -> None:
        self.app: FastAPI = create_app(settings)
        self.state: MutableMapping[str, Any] = {}
        inner = self.app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
            async with inner(app) as state:
                await wait_warm(app.state.registry, warm_timeout_s)
                yield state

        self.app.router.lifespan_context = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # The host's lifespan runner hands the app a dict to fill; keep that very dict.
            self.state = scope.setdefault("state", {})
        else:
            scope = {**scope, "state": {**self.state, **scope.get("state", {})}}
        await self.app(scope, receive, send)

    def begin_drain(self) -> None:
        """Begin the app's drain (``Drain.begin``: thread-safe, idempotent), as the SIGTERM handler does."""
        self.app.state.drain.begin()

    def readiness(self) -> tuple[bool, str] | None:
        """``/ready``'s answer, or None before the lifespan has started."""
        registry: ModelRegistry | None = getattr(self.app.state, "registry", None)
        return None if registry is None else registry.readiness()


async def wait_warm(registry: ModelRegistry, timeout_s: float) -> None:
    """Return once every model is loaded and warm.

    Raises:
        RuntimeError: start-up failed, or the models were not warm within ``timeout_s``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    # The registry has no event to wait on; loading takes seconds, so a 50 ms poll costs nothing.
    while registry.phase is Phase.LOADING:
        if loop.time() > deadline:
            raise RuntimeError(f"models not warm after {timeout_s:.0f} s: {registry.readiness()[1]}")
        await asyncio.sleep(0.05)
    ok, detail = registry.readiness()
    if not ok:
        raise RuntimeError(f"replica cannot serve: {detail}")
