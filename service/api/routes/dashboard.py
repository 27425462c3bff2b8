"""``/dashboard``: a live page of the batcher, routes and remote calls, and ``/dashboard/stats``, its data.

The page and its assets are static files from the package (no build step, no CDN) and carry no data, so they
load without credentials; the page asks for a key when ``/dashboard/stats`` answers 401 and keeps it in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

from service.api.auth import Access
from service.api.deps import MetricsDep, RegistryDep
from service.api.routes.metrics import refresh_queue_depths
from service.observability.snapshot import snapshot

router = APIRouter(tags=["dashboard"])
STATIC = Path(__file__).resolve().parents[1] / "static" / "dashboard"
ASSETS_URL = "/static/dashboard"
# The page loads its script and style from this server and talks to it alone; no inline script at all.
CSP = "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"


async def dashboard_page() -> FileResponse:
    """The dashboard's HTML (its script and style are under /static/dashboard/)."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Content-Security-Policy": CSP})


@router.get("/dashboard/stats")
async def dashboard_stats(request: Request, registry: RegistryDep, collectors: MetricsDep) -> dict[str, Any]:
    """Queue depth, batch sizes, fill, padding per model; p50/p99 per route; remote outcomes per host; in flight.

    Raises:
        AuthError: (in the middleware) missing or invalid credentials when authentication is on.
    """
    refresh_queue_depths(registry, collectors)
    access: Access = request.state.access
    data = snapshot(collectors.registry, jobs_in_flight=access.slots.total)
    # Not counting this very request: the page polls every second and would always see itself.
    data["requests_in_flight"] = max(0, data["requests_in_flight"] - 1)
    data["models_served"] = [{"id": e.model_id, "task": e.task.value} for e in registry.engines.values()]
    return data


def install_dashboard(app: FastAPI) -> None:
    """The page, its assets and its data route."""
    app.mount(ASSETS_URL, StaticFiles(directory=STATIC), name="dashboard-assets")
    # On the app itself, like /docs: a page, not an API operation (and listed in the app's own route table).
    app.add_api_route("/dashboard", dashboard_page, methods=["GET"], include_in_schema=False)
    app.include_router(router)
