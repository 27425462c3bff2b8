"""CORS for browsers, from explicit origins, methods and headers (the settings refuse wildcards that leak)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from service.config import Settings


def install_cors(app: FastAPI, settings: Settings) -> None:
    """Answer preflights and add CORS headers for the configured origins; nothing when none is configured."""
    if not settings.cors_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=list(settings.cors_methods),
        allow_headers=list(settings.cors_headers),
        allow_credentials=settings.cors_allow_credentials,
        expose_headers=["X-Request-ID", "Retry-After", "WWW-Authenticate"],
        max_age=600,
    )
