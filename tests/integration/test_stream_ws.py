"""SSE results in completion order, cancellation when the reader leaves, and WebSocket job sessions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx_sse import connect_sse
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from service.api.app import create_app
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.fault_remote import FaultRemote
from tests.support.servers import running_server

TEXT = " ".join(f"Sentence {i} is about food and service." for i in range(20))


@pytest.fixture(scope="module")
def app(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> FastAPI:
    settings = tiny_settings(
        tiny_bert_dir,
        tiny_classifier_dir,
        remote_allowlist=["127.0.0.0/8"],
        max_batch_size=2,
        batch_window=2,
        cors_origins=["https://app.example"],
    )
    return create_app(settings)


@pytest.fixture(scope="module")
def server(app: FastAPI) -> Iterator[str]:
    with running_server(app) as url:
        wait_ready(url)
        yield url


def _metric(server: str, name: str, label: str) -> float:
    for line in httpx.get(f"{server}/metrics").text.splitlines():
        if line.startswith(f"{name}_total{{") and f'"{label}"' in line:
            return float(line.split()[-1])
    return 0.0


def _events(server: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    with (
        httpx.Client(timeout=60) as client,
        connect_sse(client, "POST", f"{server}/v1/process/stream", json=body) as source,
    ):
        assert source.response.headers["content-type"].startswith("text/event-stream")
        return [(sse.event, json.loads(sse.data)) for sse in source.iter_sse()]


def test_results_stream_in_completion_order_exactly_once(server: str) -> None:
    # The remote answers only once every local result has reached the client: completion order, without a race.
    gated = FaultRemote()
    with gated as remote:
        body = {"text": TEXT, "chunk_size": 80, "targets": [{"url": f"{remote}/gated"}, {"model": "tiny-embed"}]}
        events: list[tuple[str, dict[str, Any]]] = []
        with (
            httpx.Client(timeout=60) as client,
            connect_sse(client, "POST", f"{server}/v1/process/stream", json=body) as source,
        ):
            for sse in source.iter_sse():
                events.append((sse.event, json.loads(sse.data)))
                chunks = events[0][1]["chunked"]
                local = [d for k, d in events if k == "result" and d["target"] == "tiny-embed"]
                if len(local) == chunks // 2:
                    gated.open_gate()
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "progress"
    assert kinds[-1] == "summary"
    results = [data for kind, data in events if kind == "result"]
    chunks = events[0][1]["chunked"]
    assert sorted(r["index"] for r in results) == list(range(chunks))
    order = [r["index"] % 2 for r in results]
    # Every local chunk (odd indices) arrives before any remote one (even indices).
    assert order == sorted(order, reverse=True)
    summary = events[-1][1]
    assert summary["total"] == chunks
    assert summary["successful"] == sum(r["success"] for r in results) == chunks
    assert summary["failed"] == 0


def test_errors_before_the_stream_are_plain_json(server: str) -> None:
    response = httpx.post(f"{server}/v1/process/stream", json={"text": "x", "targets": [{"model": "nope"}]})
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "model"


def test_classic_stream_path(server: str) -> None:
    with (
        httpx.Client(timeout=60) as client,
        connect_sse(client, "POST", f"{server}/stream/", json={"text": TEXT, "chunk_size": 200}) as source,
    ):
        kinds = [sse.event for sse in source.iter_sse()]
    assert kinds.count("result") >= 2
    assert kinds[-1] == "summary"


def test_reader_leaving_cancels_remote_calls_and_drops_queued_chunks(app: FastAPI, server: str, fake: str) -> None:
    httpx.post(f"{fake}/_reset")
    engine = app.state.registry.engines["tiny-embed"]
    gate = threading.Event()
    real_predict = engine.model.predict

    def held(batch: Any) -> Any:
        gate.wait(30)
        return real_predict(batch)

    dropped_before = _metric(server, "chunkserve_dropped_inputs", "tiny-embed")
    cancelled_before = _metric(server, "chunkserve_remote_calls", "cancelled")
    engine.model.predict = held
    try:
        slow = f"{fake}/generic?latency_ms=5000"
        body = {"text": TEXT, "chunk_size": 40, "targets": [{"model": "tiny-embed"}, {"url": slow}]}
        with (
            httpx.Client(timeout=60) as client,
            connect_sse(client, "POST", f"{server}/v1/process/stream", json=body) as source,
        ):
            # Keep the iterator: a discarded one closes the response, and the test means to leave only later.
            events = source.iter_sse()
            first = next(events)
            assert first.event == "progress"
            remote_calls = first_queued = json.loads(first.data)["queued"] // 2
            deadline = time.monotonic() + 10
            while httpx.get(f"{fake}/_stats").json()["in_flight"] < remote_calls and time.monotonic() < deadline:
                time.sleep(0.02)
        # The reader is gone: the remote calls are abandoned, not completed.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stats = httpx.get(f"{fake}/_stats").json()
            if stats["abandoned"] >= remote_calls:
                break
            time.sleep(0.05)
        assert stats["abandoned"] == remote_calls
        assert stats["completed"] == 0
    finally:
        gate.set()
        engine.model.predict = real_predict
    # Local chunks that were still queued are dropped before they reach the model.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dropped = _metric(server, "chunkserve_dropped_inputs", "tiny-embed") - dropped_before
        if dropped >= first_queued - 4:
            break
        time.sleep(0.05)
    # At most two batches of 2 had reached the model thread: the one held there and the one handed over behind it.
    assert dropped >= first_queued - 4
    assert _metric(server, "chunkserve_remote_calls", "cancelled") - cancelled_before == remote_calls


def _ws_url(server: str) -> str:
    return server.replace("http://", "ws://") + "/v1/ws"


def test_websocket_runs_several_jobs_and_survives_a_bad_one(server: str, fake: str) -> None:
    with ws_connect(_ws_url(server), open_timeout=10) as ws:
        ws.send(json.dumps({"job_id": "a", "text": TEXT, "chunk_size": 100, "targets": [{"model": "tiny-embed"}]}))
        ws.send(json.dumps({"job_id": "bad", "text": ""}))
        ws.send("Plain text job. It has two sentences.")
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while sum(m["type"] in ("done", "error") for m in messages) < 3 and time.monotonic() < deadline:
            messages.append(json.loads(ws.recv(timeout=30)))
    by_job: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        by_job.setdefault(str(message["job_id"]), []).append(message)
    errors = [m for m in messages if m["type"] == "error"]
    assert len(errors) == 1
    assert "text" in errors[0]["error"]["message"]
    done = {job: [m for m in ms if m["type"] == "done"] for job, ms in by_job.items()}
    finished = {job for job, d in done.items() if d}
    assert len(finished) == 2
    assert "a" in finished
    for job in finished:
        kinds = [m["type"] for m in by_job[job]]
        assert kinds[0] == "step"
        assert kinds[-1] == "done"
        results = [m for m in by_job[job] if m["type"] == "result"]
        assert sorted(r["index"] for r in results) == list(range(done[job][0]["total"]))
        assert all(r["success"] for r in results)


def test_websocket_checks_the_origin(server: str) -> None:
    with pytest.raises(InvalidStatus):
        ws_connect(_ws_url(server), origin="https://evil.example", open_timeout=10)  # type: ignore[call-overload]
    with ws_connect(_ws_url(server), origin="https://app.example", open_timeout=10) as ws:  # type: ignore[call-overload]
        ws.send("fine.")
        assert json.loads(ws.recv(timeout=30))["type"] == "step"


def _wait_for(fake: str, key: str, at_least: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    stats: dict[str, Any] = httpx.get(f"{fake}/_stats").json()
    while stats[key] < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
        stats = httpx.get(f"{fake}/_stats").json()
    return stats


def _slow_remote_job(fake: str, chunks: int) -> dict[str, Any]:
    text = " ".join(f"Chunk {i} talks." for i in range(chunks))
    return {"text": text, "chunking": "sentences", "chunk_size": 16, "api_urls": [f"{fake}/generic?latency_ms=5000"]}


def test_a_process_client_that_hangs_up_cancels_its_remote_calls(server: str, fake: str) -> None:
    httpx.post(f"{fake}/_reset")
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=httpx.Timeout(10, read=1.0)) as client:
        # The client gives up after 1 s and closes its connection; the calls would have taken 5 s.
        client.post(f"{server}/v1/process", json=_slow_remote_job(fake, 6))
    stats = _wait_for(fake, "abandoned", 6)
    assert (stats["requests"], stats["abandoned"], stats["completed"]) == (6, 6, 0)


def test_closing_a_websocket_cancels_its_running_jobs(server: str, fake: str) -> None:
    httpx.post(f"{fake}/_reset")
    with ws_connect(_ws_url(server), open_timeout=10) as ws:
        ws.send(json.dumps({"job_id": "slow", **_slow_remote_job(fake, 5)}))
        assert _wait_for(fake, "in_flight", 5)["in_flight"] == 5
    stats = _wait_for(fake, "abandoned", 5)
    assert (stats["requests"], stats["abandoned"], stats["completed"]) == (5, 5, 0)
