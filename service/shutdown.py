"""Drain: the server-wide "shutting down" state, begun once and watched by long-lived handlers.

Order of a graceful shutdown (see ``service/server/serving.py``): the signal begins the drain at once (``/ready`` turns
503, new work gets 503 + Retry-After), the listening socket closes, WebSocket sessions finish their running jobs
and close themselves, HTTP requests and SSE streams in flight complete, and the batchers drain last.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator


class Drain:
    """Whether the server is shutting down; ``begin`` is safe to call from a signal handler and more than once."""

    def __init__(self) -> None:
        self.draining = False
        self._hooks: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._begun: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._sessions = 0

    def bind(self) -> None:
        """Attach to the running event loop (the app's lifespan calls this at start-up)."""
        self._loop = asyncio.get_running_loop()
        self._begun = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        if self.draining:
            self._begun.set()

    def on_begin(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` (synchronously, so it must only flip flags) when the drain begins."""
        self._hooks.append(hook)
        if self.draining:
            hook()

    def begin(self) -> None:
        """Start draining: run the hooks now, wake the waiters on the loop."""
        if self.draining:
            return
        self.draining = True
        for hook in self._hooks:
            hook()
        loop, begun = self._loop, self._begun
        # A signal handler may run in the middle of the loop's own bookkeeping: only the thread-safe call is safe.
        if loop is not None and begun is not None and not loop.is_closed():
            loop.call_soon_threadsafe(begun.set)

    async def wait(self) -> None:
        """Return once the drain has begun.

        Raises:
            RuntimeError: ``bind`` was never called.
        """
        if self._begun is None:
            raise RuntimeError("Drain.wait() before Drain.bind(): the app's lifespan did not run")
        await self._begun.wait()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Mark a long-lived handler (a WebSocket) that closes itself once the drain begins."""
        self._sessions += 1
        if self._idle is not None:
            self._idle.clear()
        try:
            yield
        finally:
            self._sessions -= 1
            if self._sessions == 0 and self._idle is not None:
                self._idle.set()

    @property
    def sessions(self) -> int:
        """Long-lived handlers still open."""
        return self._sessions

    async def settle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every session to close; True when they all did."""
        if self._idle is None or self._sessions == 0:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
