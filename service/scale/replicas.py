"""``chunkserve serve --ray``: deploy the app on Ray Serve replicas and keep it up until told to stop."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import ray
from ray import serve

from service.config import Settings
from service.observability.logs import configure_logging
from service.scale.cluster import connect
from service.scale.deployment import APP_NAME, build
from service.scale.options import LOCAL, ReplicaOptions

log = logging.getLogger("chunkserve")


def _free_port(host: str) -> int:
    # Ray's proxy cannot bind port 0 and report it; pick a free one (it could be taken again in between).
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def serve_on_ray(
    settings: Settings,
    overrides: dict[str, Any],
    address: str,
    replicas: ReplicaOptions,
    *,
    port_file: Path | None = None,
) -> int:
    """Deploy, then wait for SIGTERM/SIGINT; stopping deletes the app, whose replicas drain (exit code 0)."""
    configure_logging(settings.log_level, settings.log_format)
    port = settings.port or _free_port(settings.host)
    connect(address)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        serve.start(http_options={"host": settings.host, "port": port})
        serve.run(build(settings, overrides, replicas), name=APP_NAME, route_prefix="/", blocking=False)
        log.info("serving on Ray at http://%s:%d with %s", settings.host, port, replicas)
        if port_file is not None:  # atomically, as ``chunkserve serve`` does: never read half-written
            tmp = port_file.with_name(port_file.name + ".tmp")
            tmp.write_text(f"{port}\n", encoding="utf-8")
            tmp.replace(port_file)
        stop.wait()
        # Ray stops routing to the replicas, lets requests in flight finish (graceful_shutdown_timeout_s), then
        # runs each replica's lifespan shutdown: the batchers drain as on SIGTERM.
        serve.delete(APP_NAME)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if address == LOCAL:
            serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
    return 0
