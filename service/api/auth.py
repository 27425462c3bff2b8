"""Authentication and the per-caller request rate, as ASGI middleware: default-deny, before any body is read.

Every path is protected except ``/health``, ``/ready``, (unless ``auth_metrics``) ``/metrics``, and the pages
that carry no data but must load before a person can type a key (``/docs``, ``/redoc``, ``/openapi.json``,
``/dashboard`` and their static assets), so a route added later is protected without anyone remembering to.
A credential comes from ``Authorization: Bearer ...`` or, on a WebSocket, from the subprotocols
``["bearer", TOKEN]`` (browsers cannot set headers there; a query parameter would land in access logs).
The principal is put in the request state for the routes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import send_error
from service.config import Settings
from service.errors import AuthError, RateLimited
from service.security.quotas import JobSlots, TokenBuckets
from service.security.verify import (
    Anonymous,
    ApiKeys,
    Authenticator,
    JwtVerifier,
    Principal,
    bearer_token,
    subprotocol_token,
)

log = logging.getLogger("chunkserve.auth")
OPEN_PATHS = frozenset({"/health", "/ready", "/docs", "/redoc", "/openapi.json", "/dashboard"})
# Static assets only (files from the package); a path with a dot-dot segment is never let through.
OPEN_PREFIXES = ("/static/docs/", "/static/dashboard/")


@dataclass(frozen=True)
class Access:
    """Who may call, how often, and how many jobs each caller may run at once."""

    authenticator: Authenticator
    buckets: TokenBuckets
    slots: JobSlots
    open_paths: frozenset[str]


def access_from_settings(settings: Settings) -> Access:
    """Build the authenticator and the quotas the settings name.

    Raises:
        ValueError: unusable keys (the settings validator has normally refused them already).
    """
    authenticator: Authenticator
    if settings.auth_mode == "api-key":
        authenticator = ApiKeys(settings.api_key_table())
    elif settings.auth_mode == "jwt":
        key, policy = settings.jwt_verification()
        authenticator = JwtVerifier(key, policy)
    else:
        authenticator = Anonymous()
    return Access(
        authenticator=authenticator,
        buckets=TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst),
        slots=JobSlots(settings.max_jobs_per_caller),
        open_paths=OPEN_PATHS if settings.auth_metrics else OPEN_PATHS | {"/metrics"},
    )


def authenticate(access: Access, scope: Scope) -> Principal:
    """The caller of an HTTP request or WebSocket handshake, with one request counted against its rate.

    Raises:
        AuthError: missing or invalid credentials.
        RateLimited: the caller is over its request rate.
    """
    token = bearer_token(Headers(scope=scope).get("authorization"))
    if token is None and scope["type"] == "websocket":
        token = subprotocol_token(scope.get("subprotocols", []))
    client = scope.get("client")
    principal = access.authenticator.authenticate(token, client[0] if client else None)
    access.buckets.take(principal.key)
    return principal


def is_open(access: Access, path: str) -> bool:
    """Whether ``path`` is served without credentials."""
    if path in access.open_paths:
        return True
    return path.startswith(OPEN_PREFIXES) and "/../" not in path and not path.endswith("/..")


class AuthMiddleware:
    """Refuses callers without valid credentials (401) or over their rate (429) before the app sees them."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_open(self.access, scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            principal = authenticate(self.access, scope)
        except AuthError as exc:
            fields = {"kind": scope["type"], "path": scope["path"], "reason": exc.reason}
            log.info("refused %s %s: %s", scope["type"], scope["path"], exc.reason, extra={"fields": fields})
            await send_error(scope, send, exc)
            return
        except RateLimited as exc:
            await send_error(scope, send, exc)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
