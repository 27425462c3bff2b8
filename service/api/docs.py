"""``/docs`` (Swagger UI) and ``/redoc`` with their assets from an installed package: nothing from a CDN.

The assets are those of the ``fastapi-offline`` package (Swagger UI 5.32.6 and ReDoc 2.5.3 bundles, with
their licence headers); only its static folder is used, the pages are FastAPI's own with the URLs pointed at
it. A Content-Security-Policy keeps each page to this server: ReDoc's side menu, for one, shows a logo from
Redocly's CDN that the browser then never fetches.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_ASSETS_URL = "/static/docs"
# Pages that carry no data and must load before a person can type a key: open even when auth is on.
DOCS_PATHS = frozenset({"/docs", "/redoc", "/openapi.json"})
# The pages' bootstrap scripts and the bundles' styles are inline; everything they load comes from 'self'.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
)
SWAGGER_PARAMETERS: dict[str, object] = {
    # Off: Swagger UI would send the whole schema to validator.swagger.io to draw a badge.
    "validatorUrl": None,
    # The key stays in the page's memory: a reload forgets it (nothing in localStorage).
    "persistAuthorization": False,
    "displayRequestDuration": True,
    "tryItOutEnabled": False,
}


def docs_assets_dir() -> Path:
    """The installed folder holding swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.png."""
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI) -> None:
    """Serve the docs pages and their assets; the app must be built with ``docs_url=None, redoc_url=None``."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=docs_assets_dir()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title="chunkserve - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}/openapi.json",
            title="chunkserve - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page
