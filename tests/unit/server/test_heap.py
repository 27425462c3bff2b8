"""The server process's garbage-collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from service.server.heap import YOUNG_THRESHOLD, freeze_heap, tune_collector


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


@pytest.mark.usefixtures("restore_gc")
def test_tuning_raises_only_the_young_threshold() -> None:
    gc.set_threshold(700, 11, 12)
    tune_collector()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 11, 12)


@pytest.mark.usefixtures("restore_gc")
def test_freezing_hides_what_is_alive_and_still_collects_what_is_not() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    kept = Node()
    freeze_heap()
    assert gc.get_freeze_count() > 0
    assert not any(obj is kept for obj in gc.get_objects())
    dropped = Node()
    del dropped
    assert gc.collect() >= 1  # garbage made after the freeze is still found
