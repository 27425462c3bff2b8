"""Reading off the event loop: a daemon thread pulls records from the reader into a bounded asyncio queue.

A thread, not ``asyncio.to_thread``: a read blocked on a pipe that never closes must not keep the process from
exiting after an interrupt, and a daemon thread is left behind where an executor would be waited for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _End:
    error: BaseException | None = None


class Feed(Generic[T]):
    """Items of ``source``, read ahead by at most ``ahead`` items, for ``await feed.get()``."""

    def __init__(self, source: Iterator[T], *, ahead: int = 64, name: str = "offline-reader") -> None:
        self._source = source
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[T | _End] = asyncio.Queue()
        self._slots = threading.Semaphore(ahead)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self._thread.start()

    async def get(self) -> T | None:
        """The next item, or None once the source is exhausted.

        Raises:
            Exception: whatever reading the source raised.
        """
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # every later get sees the end too
            if item.error is not None:
                raise item.error
            return None
        self._slots.release()
        return item

    def close(self) -> None:
        """Stop reading ahead (the thread ends after its current read)."""
        self._closed.set()
        self._slots.release()

    def _pump(self) -> None:
        end = _End()
        try:
            for item in self._source:
                self._slots.acquire()
                if self._closed.is_set() or not self._put(item):
                    return
        except BaseException as exc:
            end = _End(exc)
        self._put(end)

    def _put(self, item: T | _End) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop has closed: nobody is reading any more
            return False
        return True
