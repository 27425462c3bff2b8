"""Request-body size limit as pure ASGI middleware.

FastAPI reads a whole body before any dependency runs, so the limit has to sit in front of it: a declared
``Content-Length`` over the limit is refused before one body byte is read; a body without one (chunked) is
counted as it arrives and refused the moment it passes the limit. Either way the connection is closed.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import send_error
from service.errors import InputTooLarge


class BodyLimitMiddleware:
    """413 for request bodies over ``max_bytes``, with the limit named."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

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
        refused = started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
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
