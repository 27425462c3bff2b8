"""The fake remote's counters: requests seen, in flight (and the peak), completed or abandoned by the client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(slots=True)
class Stats:
    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    completed: int = 0
    abandoned: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)

    def begin(self, path: str) -> None:
        self.requests += 1
        self.by_path[path] = self.by_path.get(path, 0) + 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def end(self, status: int | None) -> None:
        self.in_flight -= 1
        if status is None:
            self.abandoned += 1
        else:
            self.completed += 1
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1


class Accounting:
    """Counts every API request as completed (its last byte was handed over) or abandoned (the client left first)."""

    def __init__(self, app: ASGIApp, current: Callable[[], Stats]) -> None:
        self.app, self.current = app, current

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_"):
            await self.app(scope, receive, send)
            return
        # A request that arrived before a reset keeps updating the old counters, which nobody reads any more.
        stats = self.current()
        stats.begin(scope["path"])
        gone = counted = False
        status = 0

        async def watched_receive() -> Message:
            nonlocal gone
            message = await receive()
            gone = gone or message["type"] == "http.disconnect"
            return message

        async def counted_send(message: Message) -> None:
            nonlocal status, counted
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False) and not gone:
                # Counted before the bytes leave, so a client that has its answer always sees it in /_stats.
                counted = True
                stats.end(status)
            await send(message)

        try:
            await self.app(scope, watched_receive, counted_send)
        finally:
            if not counted:
                stats.end(None if gone else 500)
