"""Offline processing: files in, JSONL out, through the same pipeline as the server and no HTTP.

``run(inputs, output, **options)`` from Python (notebooks too); ``chunkserve run`` from a shell. Names load on
first use, so that building the command line does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.jobs.targets import parse_target
    from service.offline.options import RunOptions, Summary
    from service.offline.session import run, run_async

__all__ = ["RunOptions", "Summary", "parse_target", "run", "run_async"]

_WHERE = {
    "RunOptions": "service.offline.options",
    "Summary": "service.offline.options",
    "parse_target": "service.jobs.targets",
    "run": "service.offline.session",
    "run_async": "service.offline.session",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'service.offline' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
