"""Fault injection: a real server against a remote that resets, half-closes, sends garbage, drips, stops mid-body,
answers broken headers or never answers, with local model errors and arbitrary exceptions injected.

Every request must end (its stream or WebSocket job too) with each chunk either done or failed with a clear type;
after each test no task of a request is left on the server's loop and no caller holds a job slot; and the server's
memory stays flat over 200 such requests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx_sse import connect_sse
from starlette.types import Receive, Scope, Send
from websockets.sync.client import connect as ws_connect

from service.api.app import create_app
from service.inference.engine import EngineOutput
from service.outbound.remote import RemoteResult, RemoteTarget
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.fault_remote import FaultRemote
from tests.support.servers import running_server


class _LoopProbe:
    """Passes everything to the app and remembers the server's event loop."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)

    def tasks(self) -> set[asyncio.Task[Any]]:
        """Every task on the server's loop but the one asking."""

        async def others() -> set[asyncio.Task[Any]]:
            return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(others(), self.loop).result(10)


@dataclass
class Server:
    url: str
    app: FastAPI
    probe: _LoopProbe
    baseline: set[asyncio.Task[Any]]


def _inject(app: FastAPI) -> None:
    """Arbitrary exceptions in a remote and in a local call (by marker in the text); a model that always raises."""
    pipeline = app.state.pipeline
    real_call = pipeline.remote.call

    async def remote_call(target: RemoteTarget, text: str, **options: Any) -> RemoteResult:
        if "KABOOM-R" in text:
            raise RuntimeError("injected into a remote call")
        result: RemoteResult = await real_call(target, text, **options)
        return result

    pipeline.remote.call = remote_call
    embed = app.state.registry.engines["tiny-embed"]
    real_run = embed.run

    async def local_run(texts: list[str], field: str = "input") -> EngineOutput:
        if any("KABOOM-L" in t for t in texts):
            raise LookupError("injected into a local call")
        output: EngineOutput = await real_run(texts, field)
        return output

    embed.run = local_run

    def broken_predict(batch: list[object]) -> list[object]:
        raise ValueError("injected model failure")

    app.state.registry.engines["tiny-clf"].model.predict = broken_predict


@pytest.fixture(scope="module")
def remote() -> Iterator[str]:
    with FaultRemote() as url:
        yield url


@pytest.fixture(scope="module")
def server(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[Server]:
    settings = tiny_settings(
        tiny_bert_dir,
        tiny_classifier_dir,
        remote_allowlist=["127.0.0.0/8"],
        remote_retries=2,
        max_jobs_per_caller=1,  # a job that never ended would lock its caller out at once
        job_window=4,
    )
    app = create_app(settings)
    probe = _LoopProbe(app)
    with running_server(probe) as url:  # type: ignore[arg-type]
        wait_ready(url)
        _inject(app)
        yield Server(url, app, probe, probe.tasks())


@pytest.fixture(autouse=True)
def nothing_left_behind(server: Server) -> Iterator[None]:
    yield
    deadline = time.monotonic() + 15
    while True:
        # sse-starlette starts one shutdown watcher per event loop with the first stream: not a request's task.
        left = {t for t in server.probe.tasks() - server.baseline if "_shutdown_watcher" not in repr(t.get_coro())}
        slots = dict(server.app.state.access.slots._running)
        if not left and not slots:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: tasks {sorted(repr(t) for t in left)}, job slots {slots}")
        time.sleep(0.02)


def _run(kind: str, url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's chunk results, sent as /v1/process, its SSE stream or a WebSocket job; checks the job ended."""
    if kind == "process":
        response = httpx.post(f"{url}/v1/process", json=body, timeout=60)
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results
    if kind == "stream":
        events: list[tuple[str, dict[str, Any]]] = []
        with (
            httpx.Client(timeout=60) as client,
            connect_sse(client, "POST", f"{url}/v1/process/stream", json=body) as source,
        ):
            events = [(e.event, json.loads(e.data)) for e in source.iter_sse()]
        assert events[-1][0] == "summary", events[-3:]
        return [data for kind_, data in events if kind_ == "result"]
    with ws_connect(url.replace("http://", "ws://") + "/v1/ws", open_timeout=10) as ws:
        ws.send(json.dumps({"job_id": "j", **body}))
        messages = [json.loads(ws.recv(timeout=60))]
        while messages[-1]["type"] not in ("done", "error"):
            messages.append(json.loads(ws.recv(timeout=60)))
    assert messages[-1]["type"] == "done", messages[-1]
    return [m for m in messages if m["type"] == "result"]


KINDS = ["process", "stream", "ws"]
# What each fault must come to (the retries included): connection-level faults are "connect" errors.
EXPECTED = {
    "ok": None,
    "slow": None,
    "reset": "connect",
    "halfclose": "connect",
    "garbage": "connect",
    "midbody": "connect",
    "badheaders": "connect",
    "hang": "timeout",
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_remote_fault_and_a_failing_model_end_as_clear_chunk_errors(
    server: Server, remote: str, kind: str
) -> None:
    faults = list(EXPECTED)
    targets = [{"model": "tiny-embed"}, {"model": "tiny-clf"}, *({"url": f"{remote}/{f}"} for f in faults)]
    text = " ".join(f"Sentence {i} is here." for i in range(2 * len(targets)))
    body = {"text": text, "chunking": "sentences", "chunk_size": 25, "targets": targets, "timeout_s": 2}
    results = _run(kind, server.url, body)
    assert sorted(r["index"] for r in results) == list(range(2 * len(targets)))
    outcome = {r["target"]: (r["error"] or {}).get("type") for r in results}
    expected = {"tiny-embed": None, "tiny-clf": "model_error", **{f"{remote}/{f}": t for f, t in EXPECTED.items()}}
    assert outcome == expected


@pytest.mark.parametrize("kind", KINDS)
def test_an_arbitrary_exception_fails_its_chunk_only_and_the_caller_can_go_on_at_once(
    server: Server, remote: str, kind: str
) -> None:
    sentences = [f"Sentence {i} is here." for i in range(6)]
    sentences[0] = "KABOOM-L breaks the local call."  # chunk 0 → the local model
    sentences[3] = "KABOOM-R breaks the remote call."  # chunk 3 → the remote
    body = {
        "text": " ".join(sentences),
        "chunking": "sentences",
        "chunk_size": 34,  # one sentence a chunk
        "targets": [{"model": "tiny-embed"}, {"url": f"{remote}/ok"}],
    }
    results = {r["index"]: r for r in _run(kind, server.url, body)}
    assert sorted(results) == list(range(6))
    failed = {i: r["error"] for i, r in results.items() if not r["success"]}
    assert set(failed) == {0, 3}
    assert {e["type"] for e in failed.values()} == {"internal"}
    assert all("injected" not in e["message"] for e in failed.values())  # the detail goes to the log only
    again = httpx.post(f"{server.url}/v1/process", json={"text": "Next job.", "chunk_size": 50}, timeout=60)
    assert again.status_code == 200 and again.json()["successful"] == 1  # the one job slot was freed


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * 4096


def test_memory_stays_flat_over_200_faulty_requests(server: Server, remote: str) -> None:
    faults = ["ok", "reset", "garbage", "midbody", "badheaders", "halfclose"]
    targets = [{"model": "tiny-embed"}, *({"url": f"{remote}/{f}"} for f in faults)]
    text = " ".join(f"Sentence {i} is here." for i in range(len(targets)))
    body = {"text": text, "chunking": "sentences", "chunk_size": 25, "targets": targets, "timeout_s": 5}
    rss: dict[int, int] = {}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for i in range(1, 201):
            response = client.post("/v1/process", json=body)
            assert response.status_code == 200 and response.json()["successful"] == 2
            if i in (50, 200):
                rss[i] = _rss_bytes()
    growth = rss[200] - rss[50]
    assert growth < 24 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB from request 50 to 200"
