"""A real uvicorn server in a background thread on 127.0.0.1, port 0 (the port is read back from the socket)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from importlib.util import find_spec
from types import TracebackType
from typing import Literal

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import WS_PROTOCOLS

GRACEFUL_SHUTDOWN_S = 5
# Longer than any test client's keep-alive (httpx: 5 s), so that a client never reuses a connection at the moment
# the server closes it (a "connection reset" that looks like a flaky test).
KEEP_ALIVE_S = 60


def _ws_protocol() -> Literal["websockets-sansio", "websockets", "auto"]:
    if find_spec("websockets") is None:
        return "auto"
    # uvicorn's "websockets" imports websockets.legacy, whose DeprecationWarning is an error under our pytest config.
    return "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"


class _LifespanWatch:
    """Passes everything through to ``app`` and remembers how its lifespan failed, per phase."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.phase = "startup"
        self.errors: dict[str, Exception] = {}
        self.messages: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watched_receive() -> Message:
            message = await receive()
            self.phase = message["type"].removeprefix("lifespan.")
            return message

        async def watched_send(message: Message) -> None:
            if message["type"].endswith(".failed"):
                self.messages[self.phase] = message.get("message") or "(no message)"
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        except Exception as exc:
            self.errors[self.phase] = exc
            raise

    def failure(self, phase: Literal["startup", "shutdown"]) -> RuntimeError | None:
        error, message = self.errors.get(phase), self.messages.get(phase)
        if error is None and message is None:
            return None
        # Starlette's message is a whole traceback; its last line names the exception.
        detail = repr(error) if error is not None else str(message).strip().splitlines()[-1]
        failure = RuntimeError(f"the app's lifespan failed at {phase}: {detail}")
        failure.__cause__ = error
        return failure


class ServerThread:
    """uvicorn serving ``app`` from a daemon thread; ``with`` / ``async with`` it for the base URL."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 15.0,
        http: type[asyncio.Protocol] | None = None,
    ) -> None:
        self.host, self.start_timeout_s, self.stop_timeout_s = host, start_timeout_s, stop_timeout_s
        self._watch = _LifespanWatch(app)
        config = uvicorn.Config(
            self._watch,
            host=host,
            port=0,
            interface="asgi3",
            lifespan="on",
            log_level="warning",
            ws=_ws_protocol(),
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            timeout_keep_alive=KEEP_ALIVE_S,
            http=http if http is not None else "auto",
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="test-uvicorn", daemon=True)
        self._crash: BaseException | None = None
        self.url = ""

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # SystemExit too: uvicorn leaves that way when start-up fails
            self._crash = exc

    def start(self) -> str:
        """Start serving and return ``http://HOST:PORT``.

        Raises:
            RuntimeError: the app's lifespan failed, the server stopped, or it was not up within ``start_timeout_s``.
        """
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                lifespan = self._watch.failure("startup")
                if lifespan is not None:
                    raise lifespan
                raise RuntimeError(
                    f"the test server stopped during start-up ({self._crash!r}); uvicorn's log above says why"
                ) from self._crash
            if time.monotonic() > deadline:
                self.server.should_exit = True
                raise RuntimeError(
                    f"the test server was not up within {self.start_timeout_s} s (a lifespan that never finishes?)"
                )
            time.sleep(0.005)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://[{self.host}]:{port}" if ":" in self.host else f"http://{self.host}:{port}"
        return self.url

    def stop(self) -> None:
        """Shut the server down (gracefully, then by force) and wait for its thread.

        Raises:
            RuntimeError: the thread did not end within ``stop_timeout_s``, or the app's lifespan failed at shutdown.
        """
        self.server.should_exit = True
        self._thread.join(self.stop_timeout_s)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(GRACEFUL_SHUTDOWN_S)
            raise RuntimeError(f"the test server at {self.url} did not stop within {self.stop_timeout_s} s")
        lifespan = self._watch.failure("shutdown")
        if lifespan is not None:
            raise lifespan

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.stop()
            return
        with contextlib.suppress(RuntimeError):  # the block's own error is the one worth reporting
            self.stop()

    async def __aenter__(self) -> str:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.__exit__, exc_type, exc, tb)


@contextlib.contextmanager
def running_server(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    start_timeout_s: float = 30.0,
    http: type[asyncio.Protocol] | None = None,
) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields ``http://127.0.0.1:PORT``.

    Raises:
        RuntimeError: the server did not start (its lifespan failed, or it took over ``start_timeout_s``), or it did
            not stop in time, or the app's lifespan failed at shutdown.
    """
    with ServerThread(app, host=host, start_timeout_s=start_timeout_s, http=http) as url:
        yield url
