"""A fake remote AI API (generic JSON, OpenAI embeddings and chat) for tests and benchmarks.

Every answer is computed from the request text, so a test can recompute it. Any API endpoint takes these knobs,
as query parameters or as ``X-Fake-<Name>`` headers (``latency_ms`` → ``X-Fake-Latency-Ms``; the query wins):

- ``latency_ms``: hold the answer this long (replaces the configured latency).
- ``status`` (200-599) / ``fail`` (500-599): answer with that status; ``retry_after`` adds a ``Retry-After`` header
  (sent as given, so HTTP dates work too); ``fail_times=N`` fails only the first N attempts for one ``key``
  (default: the request text), counted until ``POST /_reset``.
- ``fail_rate``: share of requests answered 500 (replaces the configured rate).
- ``malformed=1``: 200 with a truncated, non-JSON body. ``big=N``: a 200 body of exactly N bytes (JSON from 10 up).
- ``drip_ms``: send the body ``drip_bytes`` (8) bytes at a time with this pause between pieces.
- ``chunked=1``: no ``Content-Length`` (chunked transfer). ``redirect=URL``: 302 (or a 3xx ``status``) to URL.

``GET /_stats`` and ``POST /_reset`` read and zero the counters; after a reset they count only new arrivals.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.bench.servers.fake_knobs import BadRequest, Knobs, read_knobs
from service.bench.servers.fake_stats import Accounting, Stats

LatencyDist = Literal["fixed", "uniform", "exp"]
_Build = Callable[[Any], tuple[str, dict[str, Any]]]
_MODELS = {
    "object": "list",
    "data": [{"id": name, "object": "model", "created": 0, "owned_by": "fake"} for name in ("fake-embed", "fake-chat")],
}


@dataclass(frozen=True, slots=True)
class FakeRemoteConfig:
    """Server-wide defaults; the per-request knobs override them."""

    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    latency_dist: LatencyDist = "uniform"  # uniform: latency_s ± jitter; exp: exponential with mean latency_s
    fail_rate: float = 0.0
    seed: int | None = None
    dims: int = 8

    def __post_init__(self) -> None:
        if self.latency_s < 0 or self.latency_jitter_s < 0:
            raise ValueError(f"latency_s={self.latency_s} and latency_jitter_s={self.latency_jitter_s} must be >= 0")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate={self.fail_rate} must be between 0 and 1")
        if self.latency_dist not in ("fixed", "uniform", "exp"):
            raise ValueError(f"latency_dist={self.latency_dist!r} must be 'fixed', 'uniform' or 'exp'")
        if self.dims < 1:
            raise ValueError(f"dims={self.dims} must be at least 1")


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _hold(receive: Receive, seconds: float) -> bool:
    """Sleep ``seconds``; False when the client left first."""
    if seconds <= 0:
        return True
    # One future woken by a timer or by the watcher: asyncio.wait did the same with more objects per call, and
    # the fake must cost less per call than the clients it measures.
    loop = asyncio.get_running_loop()
    woke: asyncio.Future[bool] = loop.create_future()

    def wake(in_time: bool) -> None:
        if not woke.done():
            woke.set_result(in_time)

    watcher = loop.create_task(_disconnect(receive))
    watcher.add_done_callback(lambda _: wake(False))
    timer = loop.call_later(seconds, wake, True)
    try:
        return await woke
    finally:
        timer.cancel()
        watcher.cancel()


class _Answer(Response):
    """A JSON answer sent in pieces (``pause_s`` apart); it stops when the client leaves."""

    media_type = "application/json"

    def __init__(
        self,
        body: bytes,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        *,
        piece: int = 1 << 16,
        pause_s: float = 0.0,
        chunked: bool = False,
    ) -> None:
        super().__init__(body, status_code, headers)
        if chunked and "content-length" in self.headers:
            del self.headers["content-length"]
        self.piece, self.pause_s = piece, pause_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.pause_s and len(self.body) <= self.piece:
            await super().__call__(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        watcher = asyncio.ensure_future(_disconnect(receive))
        try:
            body = memoryview(self.body)
            for start in range(0, len(body), self.piece):
                if start and self.pause_s:
                    await asyncio.wait({watcher}, timeout=self.pause_s)
                else:
                    await asyncio.sleep(0)  # a turn for the watcher, so a client that left is noticed
                if watcher.done():
                    return
                chunk = bytes(body[start : start + self.piece])
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> _Answer:
    body = b"" if status in (204, 304) else _dump({"error": {"message": message, "type": "fake", "code": status}})
    return _Answer(body, status, headers)


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _words(text: str) -> int:
    return len(text.split())


def _generic(payload: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        raise BadRequest('the body must be {"text": "..."}')
    text: str = payload["text"]
    return text, {"text_length": len(text), "echo": text[:50], "upper": text.upper()[:50], "words": _words(text)}


def fake_embedding(text: str, dims: int = 8) -> list[float]:
    """The fake's embedding of ``text``: ``dims`` floats seeded by a hash of the text, L2-normalised."""
    rng = random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))
    vector = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _embeddings(payload: Any, dims: int) -> tuple[str, dict[str, Any]]:
    inputs = payload.get("input") if isinstance(payload, dict) else None
    inputs = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
        raise BadRequest("input must be a string or a non-empty list of strings")
    dims = payload.get("dimensions", dims)
    if type(dims) is not int or not 1 <= dims <= 8192:
        raise BadRequest(f"dimensions={dims!r} must be an integer in 1..8192")
    data = [{"object": "embedding", "index": i, "embedding": fake_embedding(t, dims)} for i, t in enumerate(inputs)]
    tokens = sum(_words(t) for t in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    model = str(payload.get("model", "fake-embed"))
    return "\n".join(inputs), {"object": "list", "data": data, "model": model, "usage": usage}


def _content(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


def _chat(payload: Any) -> tuple[str, dict[str, Any]]:
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list) or not any(isinstance(m, dict) and m.get("role") == "user" for m in messages):
        raise BadRequest("messages must be a list with at least one user message")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    text = _content(users[-1])
    reply = "echo: " + text[:200]
    prompt, completion = sum(_words(_content(m)) for m in messages), _words(reply)
    return text, {
        "id": "chatcmpl-fake-" + hashlib.sha256(text.encode()).hexdigest()[:16],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(payload.get("model", "fake-chat")),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


class _FakeRemote:
    def __init__(self, config: FakeRemoteConfig) -> None:
        self.config, self.stats = config, Stats()
        self.rng = random.Random(config.seed)
        self.attempts: Counter[tuple[object, ...]] = Counter()

    def endpoint(self, build: _Build) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            return await self._serve(request, build)

        return serve

    async def read_stats(self, request: Request) -> Response:
        return JSONResponse(asdict(self.stats))

    async def reset(self, request: Request) -> Response:
        self.stats = Stats()
        self.attempts.clear()
        return JSONResponse(asdict(self.stats))

    async def _serve(self, request: Request, build: _Build) -> Response:
        try:
            knobs = read_knobs(request)
            payload = None
            if request.method == "POST":
                try:
                    payload = json.loads(await request.body())
                except ValueError:
                    raise BadRequest("the body is not JSON") from None
            text, answer = build(payload)
        except BadRequest as exc:
            return _error(400, str(exc))
        except ClientDisconnect:
            return Response(status_code=499)  # nobody reads it; the accounting counts it abandoned
        if not await _hold(request.receive, self._latency_s(knobs)):
            return Response(status_code=499)
        if knobs.redirect is not None:
            code = knobs.status if knobs.status is not None and 300 <= knobs.status < 400 else 302
            return _Answer(b"", code, {"location": knobs.redirect})
        status = self._status(knobs, request.url.path, text)
        if status >= 300:
            headers = {"retry-after": knobs.retry_after} if knobs.retry_after is not None else None
            return _error(status, f"fake status {status}", headers)
        body = _dump(answer) if status != 204 else b""
        if knobs.malformed:
            body = body[: len(body) // 2] or b"{"
        if knobs.big is not None:
            body = b'{"pad":"' + b"x" * (knobs.big - 10) + b'"}' if knobs.big >= 10 else b"x" * knobs.big
        piece = knobs.drip_bytes if knobs.drip_s else 1 << 16
        return _Answer(body, status, piece=piece, pause_s=knobs.drip_s, chunked=knobs.chunked)

    def _latency_s(self, knobs: Knobs) -> float:
        config = self.config
        if knobs.latency_s is not None:
            return knobs.latency_s
        if config.latency_dist == "exp" and config.latency_s > 0:
            return self.rng.expovariate(1.0 / config.latency_s)
        if config.latency_dist == "uniform" and config.latency_jitter_s > 0:
            jitter = config.latency_jitter_s
            return max(0.0, config.latency_s + self.rng.uniform(-jitter, jitter))
        return config.latency_s

    def _status(self, knobs: Knobs, path: str, text: str) -> int:
        if knobs.status is not None and knobs.status >= 300:
            if knobs.fail_times is None:
                return knobs.status
            key = (path, knobs.status, knobs.fail_times, knobs.key if knobs.key is not None else text)
            self.attempts[key] += 1
            if self.attempts[key] <= knobs.fail_times:
                return knobs.status
        rate = self.config.fail_rate if knobs.fail_rate is None else knobs.fail_rate
        if rate and self.rng.random() < rate:
            return 500
        return knobs.status if knobs.status is not None and knobs.status < 300 else 200


def create_fake_remote(config: FakeRemoteConfig | None = None) -> Starlette:
    """A new fake remote app with its own counters."""
    fake = _FakeRemote(config or FakeRemoteConfig())
    dims = fake.config.dims
    routes = [
        Route("/", fake.endpoint(_generic), methods=["POST"]),
        Route("/generic", fake.endpoint(_generic), methods=["POST"]),
        Route("/v1/embeddings", fake.endpoint(lambda payload: _embeddings(payload, dims)), methods=["POST"]),
        Route("/v1/chat/completions", fake.endpoint(_chat), methods=["POST"]),
        Route("/v1/models", fake.endpoint(lambda _: ("", _MODELS)), methods=["GET"]),
        Route("/_stats", fake.read_stats, methods=["GET"]),
        Route("/_reset", fake.reset, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Accounting, current=lambda: fake.stats)])


def serve_fake_remote(host: str = "127.0.0.1", port: int = 9001, **config: Any) -> None:
    """Serve a fake remote until interrupted; ``config`` holds FakeRemoteConfig fields.

    Raises:
        TypeError: ``config`` names a field that FakeRemoteConfig does not have.
        ValueError: a config value is out of range.
    """
    app = create_fake_remote(FakeRemoteConfig(**config))
    # The kernel caps the backlog at net.core.somaxconn (and connections at `ulimit -n`): raise both for bigger bursts.
    settings = uvicorn.Config(app, host=host, port=port, log_level="warning", backlog=4096, limit_concurrency=None)
    uvicorn.Server(settings).run()
