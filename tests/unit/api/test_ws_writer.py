"""A WebSocket session whose writer fails ends, instead of waiting for ever on an outbox nobody empties."""

from __future__ import annotations

import asyncio
from typing import Any

from service.api.routes.ws import OUTBOX_MESSAGES, _Session
from service.shutdown import Drain


class _GoneClient:
    """A socket whose client has gone: every send fails, and nothing more is ever received."""

    def __init__(self) -> None:
        self.sends = 0

    async def send_text(self, text: str) -> None:
        self.sends += 1
        raise RuntimeError("Cannot call send once a close message has been sent")

    async def receive(self) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_failed_send_ends_the_session_and_finish_does_not_wait_for_ever() -> None:
    client = _GoneClient()
    drain = Drain()
    drain.bind()
    session = _Session(client, None, None, None, None)  # type: ignore[arg-type]
    serving = asyncio.create_task(session.serve(drain))
    await session.send("step", "job-1", step="chunked")
    await asyncio.wait_for(serving, 10)  # ends (without raising) because the writer failed
    assert client.sends == 1
    # A job still sending blocks on the full outbox until the session's close cancels it.
    job = asyncio.create_task(_fill(session))
    session.jobs["job-1"] = job  # type: ignore[assignment]
    await asyncio.wait_for(session.close(), 10)
    assert job.cancelled()


async def _fill(session: _Session) -> None:
    for i in range(OUTBOX_MESSAGES + 1):
        await session.send("result", "job-1", n=i)
