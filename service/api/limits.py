"""Request-body size and speed limits as pure ASGI middleware.

FastAPI reads a whole body before any dependency runs, so the limit has to sit in front of it: a declared
``Content-Length`` over the limit is refused before one body byte is read; a body without one (chunked) is
counted as it arrives and refused the moment it passes the limit. A body that arrives slower than a floor (after
a grace), or that stops short of its declared length, is answered 408. Either way the connection is closed.
"""

from __future__ import annotations

import asyncio
import time

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import send_error
from service.errors import ClientTooSlow, InputTooLarge


class BodyLimitMiddleware:
    """413 for request bodies over ``max_bytes``, with the limit named; 408 for bodies that arrive too slowly.

    The body must be complete within ``timeout_s`` plus one second per ``min_bytes_per_s`` bytes received so far:
    a client that declares more than it sends, or trickles bytes in, is not held on to for ever.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, *, timeout_s: float = 30.0, min_bytes_per_s: float = 8192.0
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.min_bytes_per_s = min_bytes_per_s

    def _error(self) -> InputTooLarge:
        return InputTooLarge(f"request body is over the limit of {self.max_bytes} bytes", field="body")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(scope, send, self._error(), close=True)
            return
        received = 0
        refused = started = complete = False
        began = time.monotonic()

        async def limited_receive() -> Message:
            nonlocal received, refused, complete
            if refused:
                return {"type": "http.disconnect"}
            if complete:  # after the body, receive waits for a disconnect: no floor applies
                return await receive()
            allowed = began + self.timeout_s + received / self.min_bytes_per_s - time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, allowed)):
                    message = await receive()
            except TimeoutError:
                refused = True
                if not started:
                    error = ClientTooSlow(
                        f"the request body did not arrive in time ({received} bytes after "
                        f"{time.monotonic() - began:.0f} s)",
                        field="body",
                    )
                    await send_error(scope, send, error, close=True)
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                complete = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await send_error(scope, send, self._error(), close=True)
                    # The app sees a client that left, stops reading, and its answer is dropped below.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
