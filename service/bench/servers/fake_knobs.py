"""The fake remote's per-request knobs: query parameters or ``X-Fake-<Name>`` headers, checked and typed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from starlette.requests import Request

_N = TypeVar("_N", int, float)


class BadRequest(ValueError):
    """A knob or body the fake cannot use; answered 400 with the message."""


@dataclass(frozen=True, slots=True)
class Knobs:
    latency_s: float | None = None
    status: int | None = None
    retry_after: str | None = None
    fail_times: int | None = None
    key: str | None = None
    fail_rate: float | None = None
    malformed: bool = False
    big: int | None = None
    drip_s: float = 0.0
    drip_bytes: int = 8
    chunked: bool = False
    redirect: str | None = None


def _knob(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value if value is not None else request.headers.get("x-fake-" + name.replace("_", "-"))


def _number(request: Request, name: str, kind: type[_N], low: _N, high: _N) -> _N | None:
    raw = _knob(request, name)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r} is not a {kind.__name__}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name}={raw} is outside {low}..{high}")
    return value


def _text_knob(request: Request, name: str) -> str | None:
    raw = _knob(request, name)
    if raw is not None and not (raw.isascii() and raw.isprintable()):
        raise BadRequest(f"{name}={raw!r} must be printable ASCII (it becomes a header)")
    return raw


def _flag(request: Request, name: str) -> bool:
    raw = (_knob(request, name) or "0").lower()
    if raw not in ("0", "1", "true", "false"):
        raise BadRequest(f"{name}={raw!r} must be 1 or 0")
    return raw in ("1", "true")


_NONE = Knobs()
_HEADER_PREFIX = b"x-fake-"


def read_knobs(request: Request) -> Knobs:
    """The request's knobs; a request with no query string and no ``X-Fake-*`` header skips the lookups.

    Raises:
        BadRequest: a knob is malformed or out of range.
    """
    # The fake must cost less per call than the clients it measures: most benchmark calls carry no knob, and
    # the twelve lookups below (each a scan of the headers) were a tenth of its CPU.
    if not request.scope.get("query_string") and not any(
        name.startswith(_HEADER_PREFIX) for name, _ in request.scope["headers"]
    ):
        return _NONE
    latency_ms = _number(request, "latency_ms", float, 0.0, 3_600_000.0)
    status = _number(request, "status", int, 200, 599)
    return Knobs(
        latency_s=None if latency_ms is None else latency_ms / 1000,
        status=status if status is not None else _number(request, "fail", int, 500, 599),
        retry_after=_text_knob(request, "retry_after"),
        fail_times=_number(request, "fail_times", int, 0, 1_000_000),
        key=_knob(request, "key"),
        fail_rate=_number(request, "fail_rate", float, 0.0, 1.0),
        malformed=_flag(request, "malformed"),
        big=_number(request, "big", int, 0, 1 << 30),
        drip_s=(_number(request, "drip_ms", float, 0.0, 60_000.0) or 0.0) / 1000,
        drip_bytes=_number(request, "drip_bytes", int, 1, 1 << 20) or 8,
        chunked=_flag(request, "chunked"),
        redirect=_text_knob(request, "redirect"),
    )
