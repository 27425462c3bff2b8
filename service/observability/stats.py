"""What one model call looked like, as the batcher reports it to metrics and request traces.

It lives here, not beside the batcher, so that observability stays a leaf that the batcher can report into.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchStats:
    """One call of the model: ``tokens`` is the padded cost (longest x size), ``real_tokens`` the sum of costs."""

    size: int
    tokens: int
    real_tokens: int
    queue_wait_s: float
    compute_s: float
    ok: bool
