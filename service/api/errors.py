"""Domain errors → HTTP responses, in one table. Routes hold no try/except for these."""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope, Send

from service.api.disconnect import ClientGone
from service.api.tei_errors import is_tei, tei_domain_error, tei_error
from service.errors import (
    AuthError,
    BatchFailed,
    ChunkserveError,
    ClientTooSlow,
    DeadlineExceeded,
    ForbiddenTarget,
    InputTooLarge,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    RateLimited,
    ShuttingDown,
    UpstreamError,
)

log = logging.getLogger("chunkserve.errors")

# Most specific first: the first matching class decides (InputTooLarge before InvalidInput).
STATUS_TABLE: list[tuple[type[ChunkserveError], int, str, str]] = [
    (AuthError, 401, "authentication_error", "invalid_credentials"),
    (RateLimited, 429, "rate_limit_error", "rate_limit_exceeded"),
    (Overloaded, 503, "server_overloaded", "overloaded"),
    (ShuttingDown, 503, "server_unavailable", "unavailable"),
    (ModelNotFound, 404, "invalid_request_error", "model_not_found"),
    (InputTooLarge, 413, "invalid_request_error", "input_too_large"),
    (InvalidInput, 422, "invalid_request_error", "invalid_value"),
    (ForbiddenTarget, 422, "invalid_request_error", "forbidden_target"),
    (DeadlineExceeded, 504, "timeout", "deadline_exceeded"),
    (ClientTooSlow, 408, "invalid_request_error", "request_timeout"),
    (UpstreamError, 502, "upstream_error", "upstream_error"),
    (BatchFailed, 500, "server_error", "model_error"),
]


def _body(message: str, type_: str, param: str | None, code: str | None, request_id: str | None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}, "request_id": request_id}
    )


def error_response(
    request: Request,
    status: int,
    message: str,
    *,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """One JSON error body, OpenAI's shape plus the request id."""
    body = _body(message, type_, param, code, getattr(request.state, "request_id", None))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def describe_error(exc: ChunkserveError) -> tuple[int, str, str, dict[str, str] | None]:
    """Status, error type, error code and extra headers of a domain error, from the table."""
    status, type_, code = next(
        ((s, t, c) for cls, s, t, c in STATUS_TABLE if isinstance(exc, cls)),
        (500, "server_error", "internal_error"),
    )
    headers = None
    if isinstance(exc, AuthError):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RateLimited):
        # Rounded up: a client that comes back exactly then must not be refused again.
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    elif isinstance(exc, Overloaded):
        headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
    elif isinstance(exc, ShuttingDown):
        headers = {"Retry-After": "5"}
    return status, type_, code, headers


def _domain_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ChunkserveError):  # registered for this type only
        raise exc
    status, type_, code, headers = describe_error(exc)
    if status >= 500:
        fields = {"error": type(exc).__name__, "path": request.url.path, "detail": exc.message}
        log.warning("%s on %s: %s", type(exc).__name__, request.url.path, exc.message, extra={"fields": fields})
    if is_tei(request):
        return tei_domain_error(exc)
    return error_response(request, status, exc.message, type_=type_, param=exc.field, code=code, headers=headers)


async def send_error(scope: Scope, send: Send, exc: ChunkserveError, *, close: bool = False) -> None:
    """Answer a domain error from ASGI middleware (outside the handlers above), by the same table.

    A refused WebSocket handshake gets an HTTP answer where the server supports that, else a policy-violation
    close. ``close`` asks the server to drop the connection afterwards (for a body still on its way).
    """
    status, type_, code, extra = describe_error(exc)
    body = _body(exc.message, type_, exc.field, code, scope.get("state", {}).get("request_id"))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in (extra or {}).items()]
    if close:
        headers.append((b"connection", b"close"))
    kind = "http.response"
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
            return
        kind = "websocket.http.response"
    await send({"type": f"{kind}.start", "status": status, "headers": headers})
    await send({"type": f"{kind}.body", "body": body, "more_body": False})


def _is_union_tag(part: object) -> bool:
    # pydantic names the member of a union it tried ("constrained-str", "list[str]"); fields are identifiers.
    return isinstance(part, str) and (not part.isidentifier() or part in _TYPE_TAGS)


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict"})


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p for p in loc if p not in ("body", "query", "path", "header") and not _is_union_tag(p))


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in _clean_loc(loc)]
    field = ""
    for part in parts:
        field += f"[{part}]" if part.isdigit() else (f".{part}" if field else part)
    return field or "body"


def _validation_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):  # registered for this type only
        raise exc
    errors = exc.errors()
    # For a union (a string or a list of strings) the deepest location is the branch the caller meant.
    ranked = sorted(errors, key=lambda e: -len(_clean_loc(tuple(e.get("loc", ())))))
    first = ranked[0] if ranked else {"loc": ("body",), "msg": "invalid request"}
    field = _field_of(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        message = "request body is not valid JSON"
    else:
        # Messages only: pydantic's "input" would echo the caller's (possibly huge) text back.
        message = f"{field}: {first.get('msg', 'invalid value')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    if is_tei(request):
        return tei_error(422, message, "validation")
    return error_response(request, 422, message, type_="invalid_request_error", param=field, code="invalid_value")


def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):  # registered for this type only
        raise exc
    headers = dict(exc.headers) if exc.headers else None
    return error_response(
        request, exc.status_code, str(exc.detail), type_="invalid_request_error", code=None, headers=headers
    )


def _client_gone(request: Request, exc: Exception) -> Response:
    # Nobody reads this answer; 499 (nginx's "client closed request") keeps the access log honest.
    return Response(status_code=499)


def _unhandled(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    request_id = getattr(request.state, "request_id", None)
    # This answer is sent outside the middleware that adds the header, so it adds its own.
    headers = {"X-Request-ID": request_id} if request_id else None
    return error_response(
        request,
        500,
        "internal server error; quote the request id when reporting it",
        type_="server_error",
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the table above on ``app``."""
    app.add_exception_handler(ChunkserveError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientGone, _client_gone)
    app.add_exception_handler(Exception, _unhandled)
