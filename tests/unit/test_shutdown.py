"""Drain: begun once, hooks run at once, waiters woken on the loop, sessions counted."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.shutdown import Drain


async def test_begin_runs_hooks_at_once_and_only_once() -> None:
    drain = Drain()
    drain.bind()
    calls: list[str] = []
    drain.on_begin(lambda: calls.append("hook"))
    drain.begin()
    drain.begin()
    assert calls == ["hook"] and drain.draining
    await asyncio.wait_for(drain.wait(), 5)


async def test_a_hook_added_after_the_drain_began_runs_immediately() -> None:
    drain = Drain()
    drain.begin()
    drain.bind()
    calls: list[str] = []
    drain.on_begin(lambda: calls.append("late"))
    assert calls == ["late"]
    await asyncio.wait_for(drain.wait(), 5)


async def test_begin_from_another_thread_wakes_the_loop() -> None:
    drain = Drain()
    drain.bind()
    waiter = asyncio.create_task(drain.wait())
    await asyncio.sleep(0)
    thread = threading.Thread(target=drain.begin)
    thread.start()
    await asyncio.wait_for(waiter, 5)
    thread.join()


async def test_settle_waits_for_sessions_and_gives_up_after_its_timeout() -> None:
    drain = Drain()
    drain.bind()
    assert await drain.settle(0.01)
    with drain.session():
        assert drain.sessions == 1
        assert not await drain.settle(0.01)
    assert drain.sessions == 0 and await drain.settle(0.01)

    release = asyncio.Event()

    async def session() -> None:
        with drain.session():
            await release.wait()

    task = asyncio.create_task(session())
    await asyncio.sleep(0)
    settling = asyncio.create_task(drain.settle(5))
    await asyncio.sleep(0)
    assert not settling.done()
    release.set()
    assert await settling
    await task


async def test_wait_before_bind_names_the_mistake() -> None:
    with pytest.raises(RuntimeError, match="bind"):
        await Drain().wait()
