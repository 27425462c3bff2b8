"""Per-request work accounting (chunks, model inputs, the batches they ran in) for the access log.

A ``RequestTrace`` is put in a context variable by the HTTP layer; asyncio copies the context into every task a
request starts, so the pipeline and the batcher's ``submit`` see the same object. The batcher's own loop runs in
another context, so it records into the trace each queued item carried in with it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from service.observability.stats import BatchStats


@dataclass(slots=True)
class RequestTrace:
    """What one request cost: chunks made, model inputs queued, and the batches those inputs ran in."""

    chunks: int = 0
    inputs: int = 0
    batches: int = 0
    largest_batch: int = 0
    queue_wait_s: float = 0.0
    compute_s: float = 0.0
    request_id: str | None = None  # for log lines written deep in a job (an unexpected chunk failure)

    def add_batch(self, stats: BatchStats) -> None:
        """Count one model call that computed at least one of this request's inputs."""
        self.batches += 1
        self.largest_batch = max(self.largest_batch, stats.size)
        self.queue_wait_s = max(self.queue_wait_s, stats.queue_wait_s)
        self.compute_s += stats.compute_s

    def as_fields(self) -> dict[str, Any]:
        """Log fields (times in milliseconds)."""
        return {
            "chunks": self.chunks,
            "inputs": self.inputs,
            "batches": self.batches,
            "largest_batch": self.largest_batch,
            "queue_wait_ms": round(self.queue_wait_s * 1000, 2),
            "compute_ms": round(self.compute_s * 1000, 2),
        }


current_trace: ContextVar[RequestTrace | None] = ContextVar("chunkserve_trace", default=None)
