"""One generation request and its caller's channel: the model thread pushes, the caller's event loop reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from models.base import Sampling
from service.errors import ChunkserveError

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class Delta:
    """New text of one sequence (possibly empty while a stop string or a split character is held back)."""

    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The sequence ended: why, and the tokens read and written."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    token_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Failed:
    """The model raised (or the scheduler stopped) while this sequence was running."""

    error: ChunkserveError


Event = Delta | Finish | Failed


@dataclass(eq=False)
class GenerationRequest:
    """What the scheduler decodes: prompt ids, sampling, stop strings, and the channel back to the caller."""

    prompt: list[int]
    sampling: Sampling
    stop: tuple[str, ...] = ()
    submitted_at: float = field(default_factory=time.monotonic)
    # Set from the caller's side; the model thread drops the request at its next step (a plain bool is atomic).
    cancelled: bool = False
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop, repr=False)
    _queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue, repr=False)

    def push(self, event: Event) -> None:
        """Hand ``event`` to the caller's loop (from the model thread); a caller whose loop is gone is cancelled."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody will read this
            self.cancelled = True

    def cancel(self) -> None:
        """Give the slot back: the model thread drops this request before its next step."""
        self.cancelled = True


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole generated text with why it ended and its token counts."""

    text: str
    finish: Finish


class TokenStream:
    """The caller's end: iterate for text deltas; ``finish`` is set once the iteration has ended."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.finish: Finish | None = None
        self.first_token_at: float | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        """Each new piece of text, as the model writes it.

        Raises:
            ChunkserveError: the model failed for this request, or the scheduler stopped.
        """
        try:
            while True:
                event = await self.request._queue.get()
                if isinstance(event, Delta):
                    if self.first_token_at is None:
                        self.first_token_at = time.monotonic()
                    if event.text:
                        yield event.text
                elif isinstance(event, Finish):
                    self.finish = event
                    return
                else:
                    raise event.error
        finally:
            # A caller that stops reading (disconnect, cancellation, an error) gives its slot back.
            if self.finish is None:
                self.request.cancel()

    async def collect(self) -> Completion:
        """Read the whole text.

        Raises:
            ChunkserveError: see ``__aiter__``.
        """
        parts = [piece async for piece in self]
        if self.finish is None:  # pragma: no cover - the iteration ends only with a finish or an error
            raise RuntimeError("generation ended without a finish event")
        return Completion("".join(parts), self.finish)
