"""WebSocket ``/v1/ws`` (and the classic ``/chat[/]``): many jobs on one connection, step-by-step progress.

Client → server: a JSON job (the /v1/process body, plus an optional ``job_id``) or plain text (defaults); or a
chat turn ``{"message": ..., "model": ...}`` for a generation model (``service/api/routes/ws_chat.py``).
Server → client: ``{"type": "step" | "progress" | "result" | "token" | "done" | "error", "job_id": ..., ...}``.
A bad message gets an ``error`` and the socket stays open; closing the socket cancels its jobs.
Credentials are checked on connect (``service/api/auth.py``); each job counts against the caller's request rate
and running-jobs limit, and a refused job gets an ``error`` of type ``RateLimited`` with ``retry_after_s``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from service.api.auth import Access
from service.api.generation_schemas import ChatTurn
from service.api.routes.ws_chat import Conversation, run_chat
from service.config import Settings
from service.errors import ChunkserveError, InputTooLarge, InvalidInput, RateLimited
from service.jobs.events import job_events
from service.jobs.pipeline import Pipeline
from service.jobs.targets import job_from_request
from service.runtime import job_limits
from service.schemas import ProcessRequest
from service.security.verify import WS_BEARER_PROTOCOL, Principal
from service.shutdown import Drain

router = APIRouter(tags=["process"])
log = logging.getLogger("chunkserve.ws")
_POLICY_VIOLATION = 1008
_SERVICE_RESTART = 1012
_TRY_AGAIN_LATER = 1013
OUTBOX_MESSAGES = 32


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    """Browsers send Origin: accept same-origin and the configured CORS origins; non-browsers send none."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    host = websocket.headers.get("host", "")
    if origin in (f"http://{host}", f"https://{host}"):
        return True
    return "*" in allowed or origin in allowed


class _Session:
    """One connection: a single writer, one task per job, all cancelled when the socket goes."""

    def __init__(
        self, websocket: WebSocket, pipeline: Pipeline, settings: Settings, access: Access, principal: Principal
    ) -> None:
        self.websocket = websocket
        self.pipeline = pipeline
        self.settings = settings
        self.access = access
        self.principal = principal
        # Small: a reader that falls behind holds its jobs' dispatch back (see service/jobs/dispatch.py) instead
        # of the server buffering results for it.
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=OUTBOX_MESSAGES)
        self.jobs: dict[str, asyncio.Task[None]] = {}
        self.conversation = Conversation()

    async def writer(self) -> None:
        """Send the outbox's messages in order; ends (raising) when a send fails: the client is gone."""
        while True:
            message = await self.outbox.get()
            try:
                await self.websocket.send_text(orjson.dumps(message).decode())
            finally:
                self.outbox.task_done()

    async def send(self, kind: str, job_id: str | None, **data: Any) -> None:
        await self.outbox.put({"type": kind, "job_id": job_id, **data})

    def parse(self, raw: str) -> tuple[str, ProcessRequest | ChatTurn]:
        stripped = raw.strip()
        if stripped.startswith("{"):
            payload = orjson.loads(stripped)
            job_id = str(payload.pop("job_id", "") or self._new_id())[:64]
            if "message" in payload:  # a chat turn, for a generation model
                return job_id, ChatTurn.model_validate(payload)
            return job_id, ProcessRequest.model_validate(payload)
        return self._new_id(), ProcessRequest(text=raw)

    def _new_id(self) -> str:
        # Random, not job-1, job-2...: a counter collides with ids clients pick themselves, and theirs are refused.
        return f"job-{uuid.uuid4().hex}"

    async def run_job(self, job_id: str, request: ProcessRequest | ChatTurn) -> None:
        try:
            with self.access.slots.hold(self.principal.key):
                if isinstance(request, ChatTurn):
                    await run_chat(self.pipeline.registry, self.conversation, request, job_id, self.send)
                    return
                plan = await self.pipeline.prepare(job_from_request(request, job_limits(self.settings)))
                async for event in job_events(self.pipeline, plan):
                    if event.kind == "summary":
                        await self.send("done", job_id, **event.data)
                    else:
                        await self.send(event.kind, job_id, **event.data)
        except ChunkserveError as exc:
            await self.send_error(job_id, exc)
        except Exception:
            log.exception("websocket job %s failed", job_id)
            await self.send("error", job_id, error={"type": "internal", "message": "the job failed"})
        finally:
            self.jobs.pop(job_id, None)

    async def send_error(self, job_id: str | None, exc: ChunkserveError) -> None:
        error: dict[str, Any] = {"type": type(exc).__name__, "message": exc.message, "param": exc.field}
        if isinstance(exc, RateLimited):
            error["retry_after_s"] = round(exc.retry_after_s, 3)
        await self.send("error", job_id, error=error)

    async def receive_text(self) -> str:
        """The next text message.

        Raises:
            WebSocketDisconnect: the client left.
            InputTooLarge, InvalidInput: an oversized or a binary message (the socket stays open).
        """
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        text = message.get("text")
        size = len(text.encode()) if text is not None else len(message.get("bytes") or b"")
        limit = self.settings.max_ws_message_bytes
        if size > limit:
            raise InputTooLarge(f"message has {size} bytes; at most {limit}", field="message")
        if text is None:
            raise InvalidInput("send jobs as text messages (JSON or plain text), not binary", field="message")
        return str(text)

    async def receive_loop(self) -> None:
        while True:
            try:
                raw = await self.receive_text()
                self.access.buckets.take(self.principal.key)
            except ChunkserveError as exc:
                await self.send_error(None, exc)
                continue
            try:
                job_id, request = self.parse(raw)
            except (orjson.JSONDecodeError, ValidationError, TypeError, AttributeError) as exc:
                await self.send("error", None, error={"type": "InvalidInput", "message": _describe(exc)})
                continue
            if job_id in self.jobs:
                await self.send("error", job_id, error={"type": "InvalidInput", "message": "job_id already running"})
                continue
            self.jobs[job_id] = asyncio.create_task(self.run_job(job_id, request), name=f"ws-{job_id}")

    async def finish(self) -> None:
        """Let running jobs end and their messages go out (new jobs are refused: the registry is draining)."""
        while self.jobs:
            await asyncio.wait(list(self.jobs.values()))
        await self.outbox.join()

    async def serve(self, drain: Drain) -> None:
        """Run jobs until the client leaves, or until a drain begins: then finish them and close the socket."""
        receiver = asyncio.create_task(self.receive_loop(), name="ws-receive")
        writer = asyncio.create_task(self.writer(), name="ws-writer")
        draining = asyncio.create_task(drain.wait(), name="ws-drain")
        finishing: asyncio.Task[None] | None = None
        try:
            # A writer that fails (the client is gone) ends the session too: nothing would empty the outbox.
            await asyncio.wait({receiver, writer, draining}, return_when=asyncio.FIRST_COMPLETED)
            if not receiver.done() and not writer.done():
                finishing = asyncio.create_task(self.finish(), name="ws-finish")
                await asyncio.wait({receiver, writer, finishing}, return_when=asyncio.FIRST_COMPLETED)
                if finishing.done() and not receiver.done() and not writer.done():
                    await self.websocket.close(code=_SERVICE_RESTART, reason="server shutting down; reconnect")
        finally:
            tasks = [t for t in (receiver, writer, draining, finishing) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        if not writer.cancelled() and writer.exception() is not None:
            log.info("websocket writer stopped: %r", writer.exception())
            return
        error = None if receiver.cancelled() else receiver.exception()
        if error is not None and not isinstance(error, WebSocketDisconnect):
            raise error

    async def close(self) -> None:
        for task in list(self.jobs.values()):
            task.cancel()
        if self.jobs:
            await asyncio.wait(self.jobs.values())


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "message"
        return f"{field}: {first.get('msg', 'invalid value')}"
    if isinstance(exc, orjson.JSONDecodeError):
        return "the message is not valid JSON"
    return "the message is not a job object"


@router.websocket("/v1/ws")
@router.websocket("/chat/")
@router.websocket("/chat")
async def jobs_socket(websocket: WebSocket) -> None:
    """Run jobs sent over the socket, pushing their steps and results."""
    settings: Settings = websocket.state.settings
    if not origin_allowed(websocket, settings.cors_origins):
        await websocket.close(code=_POLICY_VIOLATION, reason="origin not allowed")
        return
    drain: Drain = websocket.state.drain
    if drain.draining:
        await websocket.close(code=_TRY_AGAIN_LATER, reason="server shutting down")
        return
    # A browser that sent its token as subprotocols gets "bearer" back, never the token.
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=WS_BEARER_PROTOCOL if WS_BEARER_PROTOCOL in offered else None)
    principal: Principal = websocket.state.principal
    session = _Session(websocket, websocket.state.pipeline, settings, websocket.state.access, principal)
    try:
        with drain.session():
            await session.serve(drain)
    finally:
        await session.close()
