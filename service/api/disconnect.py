"""Cancel a handler's work when its HTTP client goes away (Starlette does not do this for plain routes)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the answer was ready; its work was cancelled."""


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first.

    Must be called after the body was read (the next message is then the disconnect).

    Raises:
        ClientGone: the client left; ``work`` was cancelled.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()  # the client left, or this handler itself was cancelled: the work goes too
            await asyncio.wait({task})  # not gather: a second cancel mid-cleanup would leak sockets
    if not task.cancelled():
        return task.result()
    raise ClientGone
