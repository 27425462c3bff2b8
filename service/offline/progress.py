"""Progress on stderr: a tqdm bar (documents, chunks, chunks/s, ETA) on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO


class Progress(Protocol):
    """What the runner tells about its progress."""

    def advance(self, documents: int, chunks: int) -> None: ...

    def note(self, message: str) -> None: ...

    def close(self) -> None: ...


class QuietProgress:
    """No bar; notes still go to the stream (skipped records must be reported)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def advance(self, documents: int, chunks: int) -> None:
        return

    def note(self, message: str) -> None:
        if self.stream is not None:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        return


class BarProgress:
    """A tqdm bar counting documents (ETA when the total is known) with chunks and chunks/s beside it."""

    def __init__(self, total: int | None, stream: TextIO) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="doc", file=stream, dynamic_ncols=True, mininterval=0.25, smoothing=0.1)
        self._chunks = 0
        self._start = time.perf_counter()
        self._shown = 0.0

    def advance(self, documents: int, chunks: int) -> None:
        self._chunks += chunks
        now = time.perf_counter()
        if now - self._shown >= 0.25:
            self._shown = now
            rate = self._chunks / max(now - self._start, 1e-9)
            self._bar.set_postfix_str(f"{self._chunks} chunks, {rate:.1f} chunks/s", refresh=False)
        self._bar.update(documents)

    def note(self, message: str) -> None:
        self._bar.write(message, file=self._bar.fp)

    def close(self) -> None:
        self._bar.close()


def make_progress(count: Callable[[], int | None], *, quiet: bool, stream: TextIO | None = None) -> Progress:
    """A bar when ``stream`` (stderr by default) is a terminal and not ``quiet``, else plain notes.

    ``count`` (the number of documents, for the ETA) is called only when a bar is shown.
    """
    stream = stream if stream is not None else sys.stderr
    if quiet or not stream.isatty():
        return QuietProgress(stream)
    return BarProgress(count(), stream)
