"""Garbage-collector settings for a long-running server process.

After start-up the heap holds hundreds of thousands of long-lived objects (torch, transformers, the app). CPython's
collector would walk all of them again and again while a request fans out into thousands of short-lived ones;
freezing them and collecting the young generation less often cut the server's CPU per
1,000-chunk request from 0.52 to 0.38 s (bench scenario ``process``).
"""

from __future__ import annotations

import gc

# Young-generation threshold: a 1,000-call fan-out allocates a few hundred thousand containers.
YOUNG_THRESHOLD = 50_000


def tune_collector() -> None:
    """Collect the young generation every ``YOUNG_THRESHOLD`` allocations instead of every 700."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def freeze_heap() -> None:
    """Move everything alive now out of the collector's sight: it is never garbage, so walking it is waste."""
    gc.collect()
    gc.freeze()
