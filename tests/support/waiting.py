"""Waiting for a condition that another task or thread makes true (bounded, so a broken test fails, not hangs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], bool], *, timeout_s: float = 20.0, step_s: float = 0.002) -> None:
    """Poll ``condition`` until it holds.

    Raises:
        AssertionError: it did not hold within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    for _ in iter(int, 1):
        if condition():
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(step_s)
    raise AssertionError(f"condition did not hold within {timeout_s} s")
