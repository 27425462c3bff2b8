"""One structured log line and one latency observation per request (pure ASGI: streaming and cancellation pass
through untouched). WebSocket connections get one line when they close, covering every job they ran."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability.metrics import Metrics
from service.observability.trace import RequestTrace, current_trace

log = logging.getLogger("chunkserve.access")

# Not a route of ours: one label for all of them, or every scanner's probe would add a metric series.
UNMATCHED = "unmatched"
CLIENT_GONE = 499


def route_of(scope: Scope, status: int) -> str:
    """The matched route's template (``/v1/models/{model_id:path}``), never a raw path that a caller chose."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # FastAPI serves /openapi.json and /docs without naming a route; only fixed paths can answer 2xx.
    if 200 <= status < 300 and isinstance(scope.get("path"), str):
        return str(scope["path"])
    return UNMATCHED


class AccessLogMiddleware:
    """Logs id, principal, route, status, latency, chunks and batch statistics; feeds the request histogram."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        metrics = state.get("metrics")
        trace = RequestTrace()
        token = current_trace.set(trace)
        status = 0
        failed = False

        async def watched_send(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close" and status == 0:
                status = 403  # closed before the handshake: uvicorn answers 403
            await send(message)

        started = time.perf_counter()
        if isinstance(metrics, Metrics):
            metrics.in_flight.inc()
        try:
            await self.app(scope, receive, watched_send)
        except asyncio.CancelledError:
            status = status or CLIENT_GONE
            raise
        except Exception:
            failed = True
            status = status or 500  # the error handler outside this middleware answers 500
            raise
        finally:
            current_trace.reset(token)
            elapsed = time.perf_counter() - started
            route = route_of(scope, status)
            method = scope.get("method", "WS")
            if isinstance(metrics, Metrics):
                metrics.in_flight.dec()
                metrics.observe_request(method, route, status, elapsed)
            principal = state.get("principal")
            fields: dict[str, Any] = {
                "request_id": state.get("request_id"),
                # Who authenticated (key name or token subject); anonymous callers are just their address.
                "principal": _principal(principal),
                "method": method,
                "route": route,
                "path": scope.get("path"),
                "status": status,
                "latency_ms": round(elapsed * 1000, 2),
                **trace.as_fields(),
            }
            if failed:
                fields["error"] = True
            log.info("%s %s %s", method, scope.get("path"), status, extra={"fields": fields})


def _principal(principal: object) -> str | None:
    key = getattr(principal, "key", None)
    if key is None or getattr(principal, "kind", None) == "anonymous":
        return None
    return str(key)
