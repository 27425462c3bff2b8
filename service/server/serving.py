"""Running the HTTP server: one process, or N worker processes sharing one socket, with graceful shutdown.

SIGTERM (or SIGINT) begins the app's drain at once, then uvicorn stops accepting, waits for connections and runs
the lifespan shutdown (which drains the batchers). The whole drain is bounded by ``shutdown_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from importlib.util import find_spec
from pathlib import Path
from types import FrameType

import uvicorn

from service.api.app import create_app
from service.config import Settings
from service.observability.logs import configure_logging
from service.server.heap import freeze_heap, tune_collector
from service.shutdown import Drain

log = logging.getLogger("chunkserve")


def _ws_protocol() -> str:
    # uvicorn's default WebSocket implementation imports websockets.legacy, which is deprecated.
    return "websockets-sansio" if "websockets-sansio" in uvicorn.config.WS_PROTOCOLS else "auto"


def _http_protocol(settings: Settings) -> type[asyncio.Protocol] | str:
    # Our limits sit on uvicorn's httptools protocol; without httptools, h11 has a head-size limit of its own.
    if find_spec("httptools") is None:
        return "h11"
    from service.server.http_limits import limited_protocol

    return limited_protocol(settings.max_header_bytes, settings.max_headers, settings.header_timeout_s)


def uvicorn_config(settings: Settings, app: object) -> uvicorn.Config:
    """uvicorn's settings for ``app``: our logging, no access log of its own, the drain's timeout."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws=_ws_protocol(),  # type: ignore[arg-type]
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)),
        server_header=False,
        timeout_keep_alive=settings.timeout_keep_alive_s,
        http=_http_protocol(settings),  # type: ignore[arg-type]
        h11_max_incomplete_event_size=settings.max_header_bytes,  # used only where httptools is missing
        # Up to twice the limit the app answers with an error message and keeps the socket; past that the
        # protocol layer closes it (1009) before buffering any more.
        ws_max_size=2 * settings.max_ws_message_bytes,
    )


class GracefulServer(uvicorn.Server):
    """uvicorn's server, plus: the drain begins in the signal handler, and WebSocket sessions finish their jobs
    before uvicorn closes their connections (it would close them at once with 1012)."""

    def __init__(
        self, config: uvicorn.Config, *, drain: Drain, timeout_s: float, port_file: Path | None = None
    ) -> None:
        super().__init__(config)
        self.drain = drain
        self.timeout_s = timeout_s
        self.port_file = port_file

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's handler: it re-raises the signal once shut down, so the process would end "killed by
        # SIGTERM" (-15) instead of exiting 0 after a clean drain. A second signal still forces the exit.
        self.drain.begin()
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.port_file is not None and self.servers:
            write_port_file(self.port_file, self.servers[0].sockets[0].getsockname()[1])

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        started = time.monotonic()
        for server in self.servers:
            server.close()  # refuse new connections before anything else
        self.drain.begin()
        if not await self.drain.settle(self.timeout_s):
            fields = {"sessions": self.drain.sessions, "timeout_s": self.timeout_s}
            log.warning(
                "%d WebSocket session(s) still open after %.0f s",
                self.drain.sessions,
                self.timeout_s,
                extra={"fields": fields},
            )
        left = self.timeout_s - (time.monotonic() - started)
        self.config.timeout_graceful_shutdown = max(1, round(left))
        await super().shutdown(sockets)


def write_port_file(path: Path, port: int) -> None:
    """Write the bound port where a supervisor (or a test) can read it; atomically, so it is never half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n", encoding="utf-8")
    tmp.replace(path)


def serve(settings: Settings, *, port_file: Path | None = None) -> int:
    """Serve until told to stop; the exit code (0 after a clean drain, 1 when start-up failed)."""
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:
        return _serve_workers(settings, port_file)
    return _serve_one(settings, None, port_file)


def _serve_one(settings: Settings, sockets: list[socket.socket] | None, port_file: Path | None) -> int:
    failure: list[str] = []
    server: GracefulServer | None = None

    def on_fatal(reason: str) -> None:
        failure.append(reason)
        if server is not None:
            server.should_exit = True

    tune_collector()
    app = create_app(settings, on_fatal=on_fatal, on_loaded=freeze_heap)
    drain: Drain = app.state.drain
    server = GracefulServer(
        uvicorn_config(settings, app), drain=drain, timeout_s=settings.shutdown_timeout_s, port_file=port_file
    )
    server.run(sockets=sockets)
    if failure:
        print(f"chunkserve: start-up failed: {failure[0]}", file=sys.stderr)
        return 1
    return 0


def _worker(settings: Settings, sock: socket.socket) -> None:
    configure_logging(settings.log_level, settings.log_format)
    sys.exit(_serve_one(settings, [sock], None))


def _serve_workers(settings: Settings, port_file: Path | None) -> int:
    """N processes, each with its own models and batchers, accepting on one shared socket.

    A worker that stops on its own (start-up failure, crash) stops them all with exit code 1: restarting is the
    container orchestrator's job, and a half-sized server that looks healthy is worse than a restart.
    """
    config = uvicorn_config(settings, "unused:app")
    sock = config.bind_socket()
    sock.listen(config.backlog)  # connections wait in the backlog until a worker is up, rather than being refused
    if port_file is not None:
        write_port_file(port_file, sock.getsockname()[1])
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(settings, sock), name=f"chunkserve-worker-{i}")
        for i in range(settings.workers)
    ]
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        while not stop.wait(0.25):
            if any(w.exitcode is not None for w in workers):
                log.error("a worker stopped on its own; stopping the others")
                break
    finally:
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + settings.shutdown_timeout_s + 10
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.exitcode is None:
                worker.kill()
                worker.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    # -SIGTERM: the signal came before the worker set up its handlers, so before it had taken any request.
    clean = stop.is_set() and all(w.exitcode in (0, -signal.SIGTERM) for w in workers)
    return 0 if clean else 1
