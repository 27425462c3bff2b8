"""Ray's replica stop begins the drain first: the wrapped method is there, wrapped once, and calls the hook."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("ray.serve")

from ray import serve
from ray.serve._private.replica import Replica

from service.scale import stopping


@pytest.fixture
def restored() -> Iterator[None]:
    original = Replica.perform_graceful_shutdown
    try:
        yield
    finally:
        Replica.perform_graceful_shutdown = original  # type: ignore[method-assign]


def test_this_ray_release_has_the_method_that_is_wrapped(restored: None) -> None:
    # An upgrade that moves it must fail here, not silently bring back abrupt WebSocket closes.
    assert stopping.install() is True
    wrapped = Replica.perform_graceful_shutdown
    assert stopping.install() is True
    assert Replica.perform_graceful_shutdown is wrapped, "installing twice must not wrap twice"


def test_the_wrapper_begins_the_drain_before_ray_waits_for_requests(
    restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []

    class Servable:
        def begin_drain(self) -> None:
            order.append("drain")

    class Context:
        servable_object = Servable()

    async def ray_shutdown(self: Any) -> None:
        order.append("ray waits for requests in flight, then calls __del__")

    monkeypatch.setattr(Replica, "perform_graceful_shutdown", ray_shutdown)
    monkeypatch.setattr(serve, "get_replica_context", Context)
    assert stopping.install() is True
    asyncio.run(Replica.perform_graceful_shutdown(object()))  # type: ignore[arg-type,no-untyped-call]
    assert order == ["drain", "ray waits for requests in flight, then calls __del__"]


def test_outside_a_replica_the_wrapper_only_delegates(restored: None, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def ray_shutdown(self: Any) -> None:
        calls.append("ray")

    def no_context() -> None:
        raise RuntimeError("`serve.get_replica_context()` may only be called from within a Ray Serve deployment.")

    monkeypatch.setattr(Replica, "perform_graceful_shutdown", ray_shutdown)
    monkeypatch.setattr(serve, "get_replica_context", no_context)
    stopping.install()
    asyncio.run(Replica.perform_graceful_shutdown(object()))  # type: ignore[arg-type,no-untyped-call]
    assert calls == ["ray"]
