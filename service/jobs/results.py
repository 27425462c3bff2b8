"""What one chunk's work came to, and the per-job budget on the bytes those results hold."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why one chunk failed, safe to show to the caller."""

    type: str
    message: str


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """One chunk's outcome at one target."""

    index: int
    target: str
    success: bool
    result: Any = None
    error: ErrorInfo | None = None
    latency_ms: float = 0.0
    attempts: int = 1


def failed(index: int, label: str, start: float, kind: str, message: str, attempts: int = 1) -> ChunkResult:
    """A failed chunk result; ``start`` is the ``time.perf_counter()`` its work began at."""
    return ChunkResult(
        index, label, False, error=ErrorInfo(kind, message), latency_ms=ms_since(start), attempts=attempts
    )


def ms_since(start: float) -> float:
    """Milliseconds since the ``time.perf_counter()`` instant ``start``, rounded for reports."""
    return round((time.perf_counter() - start) * 1000, 2)


BUDGET_ERROR = "result_budget"


class ResultBudget:
    """Bytes of results one job may hold; past the limit its remaining chunks fail with ``result_budget``.

    Each answer is capped on its own, and chunks per job are capped, but not their product: without this a job of
    many chunks with large answers holds gigabytes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def spent(self) -> bool:
        return self.used >= self.limit

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes; False (and nothing counted) when they do not fit."""
        if self.used + size > self.limit:
            self.used = self.limit  # the rest of the job fails too: results must not depend on arrival order luck
            return False
        self.used += size
        return True

    def message(self) -> str:
        """Why a chunk failed on this budget."""
        return f"the job's results passed its {self.limit}-byte budget (CHUNKSERVE_MAX_JOB_RESULT_BYTES)"
