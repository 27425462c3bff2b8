"""The app as a Ray Serve replica runs it: the lifespan's state in every request, start-up held until warm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from service.registry import ModelRegistry, Phase


class LifespanState:
    """ASGI wrapper that copies the lifespan's state into each request's scope, as uvicorn does.

    Ray Serve runs the app's lifespan itself but does not pass its state on to requests, and every route reads
    the registry, settings and pipeline from ``request.state``.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state: MutableMapping[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # uvicorn's lifespan runner hands the app a dict to fill; keep that very dict.
            self.state = scope.setdefault("state", {})
        else:
            # Ray's proxy may already have put an (empty) state in the scope: the lifespan's values go under it.
            scope = {**scope, "state": {**self.state, **scope.get("state", {})}}
        await self.app(scope, receive, send)


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


def hold_startup_until_warm(app: FastAPI, timeout_s: float) -> None:
    """Make the lifespan's start-up end only once the models are warm, so Ray routes no request before then.

    ``chunkserve serve`` answers ``/ready`` 503 while loading; a Ray replica instead stays "starting" (no traffic)
    until this start-up returns, and a failed start-up fails the replica with the reason.
    """
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with inner(a) as state:
            await wait_warm(a.state.registry, timeout_s)
            yield state

    app.router.lifespan_context = lifespan
