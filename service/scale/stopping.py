"""A replica that Ray Serve stops begins the app's drain at once, as SIGTERM does under ``chunkserve serve``.

Ray Serve stops a replica in this order: stop routing to it, wait until it has no request in flight (at most
``graceful_shutdown_timeout_s``), then call the user class's ``__del__`` (which runs the app's lifespan shutdown),
then kill it. An open WebSocket is a request in flight for as long as it is open, so the lifespan's drain, which is
what tells WebSocket sessions to finish their jobs and close (1012), would only come once the timeout had passed
and Ray was about to kill the process: every session ended abruptly.

Ray has no hook for "this replica is being stopped" before that wait, so ``install`` wraps the replica's graceful
shutdown (``Replica.perform_graceful_shutdown``, Ray's internal class) to call the user object's ``begin_drain``
first. Where a Ray release lacks that method, nothing is wrapped and a warning says so: replicas then drain as
before, at ``__del__`` (a test checks the method is there, so an upgrade that moves it fails loudly).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ray import serve

log = logging.getLogger("chunkserve")

HOOK = "begin_drain"
_WRAPPED = "__chunkserve_drain_first__"


def _replica_class() -> type | None:
    try:
        from ray.serve._private.replica import Replica
    except ImportError:
        return None
    method = getattr(Replica, "perform_graceful_shutdown", None)
    return Replica if callable(method) else None


def _begin_drain() -> None:
    """Call ``begin_drain`` on this process's replica object, if it has one (only flips flags: safe off-loop)."""
    try:
        servable = serve.get_replica_context().servable_object
    except Exception:  # no replica context: not a replica process, or not initialised yet
        return
    hook = getattr(servable, HOOK, None)
    if callable(hook):
        hook()


def install() -> bool:
    """Make every replica in this process begin its drain when Ray starts stopping it; True when in place.

    Idempotent. Called from the deployment's constructor, which runs in the replica's own process.
    """
    replica = _replica_class()
    if replica is None:
        log.warning("this Ray release has no Replica.perform_graceful_shutdown: replicas drain only at __del__")
        return False
    original: Callable[[Any], Awaitable[None]] = replica.perform_graceful_shutdown  # type: ignore[attr-defined]
    if getattr(original, _WRAPPED, False):
        return True

    @functools.wraps(original)
    async def perform_graceful_shutdown(self: Any) -> None:
        _begin_drain()
        await original(self)

    setattr(perform_graceful_shutdown, _WRAPPED, True)
    replica.perform_graceful_shutdown = perform_graceful_shutdown  # type: ignore[attr-defined]
    return True
