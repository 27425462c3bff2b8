"""A reorder buffer: work numbered in submission order is released in that order, whatever order it finishes in."""

from __future__ import annotations

from collections.abc import Callable


class Reorder:
    """Holds items that finish early and releases each once every item numbered before it has been released."""

    def __init__(self) -> None:
        self._issued = 0
        self._next = 0
        self._held: dict[int, Callable[[], None]] = {}

    @property
    def held(self) -> int:
        """Items finished but waiting for an earlier one."""
        return len(self._held)

    def number(self) -> int:
        """The next sequence number, in submission order."""
        issued = self._issued
        self._issued += 1
        return issued

    def arrive(self, seq: int, release: Callable[[], None]) -> None:
        """Item ``seq`` is done: run ``release`` now if it is next, else when its turn comes."""
        self._held[seq] = release
        while self._next in self._held:
            self._held.pop(self._next)()
            self._next += 1

    def flush(self) -> None:
        """Release everything held, in order, skipping the gaps (a run that stops keeps its finished results)."""
        for seq in sorted(self._held):
            self._held.pop(seq)()
