"""Batching policy: the batcher's named budgets and how a window is cut.

Pure data and arithmetic; ``service/batching/batcher.py`` owns the asyncio side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """The batcher's budgets; ``max_wait_s`` counts from the first queued item's arrival."""

    max_batch_size: int = 32
    max_wait_s: float = 0.002
    max_batch_tokens: int = 16384
    max_queue: int = 1024
    window: int = 256
    retry_singly: bool = True
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_batch_tokens", "max_queue", "window", "retry_after_s"):
            value = getattr(self, name)
            if not value > 0:  # written this way so NaN is refused too
                raise ValueError(f"{name} must be > 0, got {value!r}; set it to a positive number")
        if not self.max_wait_s >= 0:
            raise ValueError(f"max_wait_s must be >= 0, got {self.max_wait_s!r}; use 0 to dispatch at once")
        if self.window < self.max_batch_size:
            raise ValueError(
                f"window ({self.window}) must be >= max_batch_size ({self.max_batch_size}); "
                "raise window or lower max_batch_size"
            )


def plan_batches(costs: Sequence[int], max_batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Indices of ``costs`` sorted by cost (stable) and cut into consecutive batches within both budgets.

    An item over ``max_batch_tokens`` on its own gets a batch of one rather than never running.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(costs)), key=costs.__getitem__):
        n = len(current) + 1
        if current and (n > max_batch_size or costs[i] * n > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
