"""Offline processing: files in, JSONL out, through the same pipeline as the server and no HTTP.

``run(inputs, output, **options)`` from Python (notebooks too); ``chunkserve run`` from a shell.
"""

from __future__ import annotations

from service.offline.options import RunOptions, Summary, parse_target
from service.offline.session import run, run_async

__all__ = ["RunOptions", "Summary", "parse_target", "run", "run_async"]
