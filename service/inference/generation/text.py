"""Token ids to text, one token at a time, with ``stop`` strings cut out and held back until they are decided."""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]
_REPLACEMENT = "\ufffd"  # what a decoder makes of a character whose bytes have not all arrived yet


class TextCursor:
    """Incremental detokenization of one sequence; ``push`` returns the text that is now final.

    Each step decodes only a short window of ids (the offsets technique of text-generation-inference), so the
    cost per token stays flat. Text that could still become a ``stop`` string, and a character split across
    tokens, are held back; the pieces returned, joined, are the whole text up to the first stop string.
    """

    def __init__(self, decode: Decode, stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stop = tuple(s for s in stop if s)
        self._ids: list[int] = []
        self._prefix = 0  # ids before this index are fully turned into text
        self._read = 0  # ids before this index have had their text released to ``_text``
        self._pending = ""  # decoded text not yet returned (a possible stop string's beginning)
        self.stopped = False

    def push(self, token: int) -> str:
        """Add one token; return the text that became final (empty while undecided). Sets ``stopped``."""
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) <= len(before) or after.endswith(_REPLACEMENT):
            return ""
        self._pending += after[len(before) :]
        self._prefix, self._read = self._read, len(self._ids)
        return self._release()

    def flush(self) -> str:
        """At the end of the sequence: whatever was held back (a stop string's beginning that never completed,
        a character whose bytes never all arrived), so that the pieces join to the decoding of every token."""
        if self.stopped:
            return ""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        text = self._pending + (after[len(before) :] if len(after) > len(before) else "")
        self._pending = ""
        return text

    def _release(self) -> str:
        if not self._stop:
            text, self._pending = self._pending, ""
            return text
        cut = min((i for i in (self._pending.find(s) for s in self._stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            text, self._pending = self._pending[:cut], ""
            return text
        hold = _partial_stop(self._pending, self._stop)
        text = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(self._pending) - hold :]
        return text


def _partial_stop(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of ``text`` are the beginning of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
