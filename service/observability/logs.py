"""Logging set-up: one JSON object per line (or plain text for people), for chunkserve and uvicorn alike.

Structured fields travel in ``extra={"fields": {...}}`` and become top-level keys of the JSON line.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

LogFormat = Literal["auto", "json", "text"]

# Keys a record's fields may not overwrite: they say what the line is.
_RESERVED = frozenset({"ts", "level", "logger", "msg"})


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...fields, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if k not in _RESERVED})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic format, with structured fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return text


def resolve_format(fmt: LogFormat) -> Literal["json", "text"]:
    """``auto`` is text for a person at a terminal and JSON for everything else (log collectors, files, pipes)."""
    if fmt != "auto":
        return fmt
    isatty = getattr(sys.stderr, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def configure_logging(level: str, fmt: LogFormat = "auto") -> None:
    """Send every logger (uvicorn's included) through one stderr handler in ``fmt`` (see ``resolve_format``).

    uvicorn is then started with ``log_config=None`` so it keeps this set-up, and ``access_log=False`` because
    chunkserve writes its own access line (with the request id, principal and batch statistics).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if resolve_format(fmt) == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # httpx logs every outbound call at INFO; the remote-call metrics already count them.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
