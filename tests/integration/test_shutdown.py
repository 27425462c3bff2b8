"""Graceful shutdown of a real server process: SIGTERM with work in flight, and the drain's own rules in-process."""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from service.api.app import create_app
from service.shutdown import Drain
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.processes import server_process
from tests.support.servers import ServerThread, running_server

IN_FLIGHT = 20
REMOTE_LATENCY_MS = 5000  # every call must still be in flight when all have started, on a loaded machine too
SHUTDOWN_TIMEOUT_S = 15
TEXT = "First sentence about food. Second sentence about service."


def _fake_in_flight(fake: str) -> int:
    in_flight: int = httpx.get(f"{fake}/_stats").json()["in_flight"]
    return in_flight


def _wait_for(condition: Any, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _models_ready(server: Any) -> int:
    """How many worker processes have logged their (one) model ready."""
    return sum(str(line.get("msg", "")).startswith("model tiny-embed ready") for line in server.log_lines())


def _ready_now(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=30, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def _process(url: str, fake: str) -> httpx.Response:
    body = {
        "text": TEXT,
        "chunk_size": 30,
        "assignment": "broadcast",
        "targets": [{"model": "tiny-embed"}, {"url": f"{fake}/generic?latency_ms={REMOTE_LATENCY_MS}"}],
    }
    with httpx.Client(timeout=60, trust_env=False) as client:
        return client.post(f"{url}/v1/process", json=body)


def _stream(url: str, fake: str, events: list[tuple[str, dict[str, Any]]], opened: threading.Event) -> None:
    body = {"text": TEXT, "chunk_size": 30, "targets": [{"url": f"{fake}/generic?latency_ms={REMOTE_LATENCY_MS}"}]}
    with (
        httpx.Client(timeout=60, trust_env=False) as client,
        connect_sse(client, "POST", f"{url}/v1/process/stream", json=body) as source,
    ):
        for sse in source.iter_sse():
            events.append((sse.event, json.loads(sse.data)))
            opened.set()


def _probe_until_refused(url: str, timeout_s: float = 30.0) -> list[int | str]:
    """What new connections get until one is refused at the socket: a status, or "dropped" for a connection
    accepted just before the listener closed and then closed unanswered (nothing was processed)."""
    seen: list[int | str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            seen.append(httpx.get(f"{url}/ready", timeout=2, trust_env=False).status_code)
        except httpx.ConnectError:
            return seen
        except (httpx.ReadError, httpx.RemoteProtocolError):
            seen.append("dropped")
        time.sleep(0.01)
    raise AssertionError(f"new connections were still accepted {timeout_s} s after SIGTERM: {seen}")


def _read_until_closed(ws: ClientConnection, messages: list[dict[str, Any]]) -> ConnectionClosed:
    """Append every message until the server closes the socket; the close, for its code."""
    while True:
        try:
            messages.append(json.loads(ws.recv(10)))
        except ConnectionClosed as closed:
            return closed


def test_sigterm_finishes_work_in_flight_refuses_new_and_exits_0(
    fake: str, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    args = ["--model", f"tiny-embed={tiny_bert_dir}:embedding", "--device", "cpu", "--torch-threads", "1"]
    args += ["--remote-allowlist", "127.0.0.0/8", "--shutdown-timeout-s", str(SHUTDOWN_TIMEOUT_S)]
    with server_process(args, tmp_path) as server, ThreadPoolExecutor(IN_FLIGHT) as pool:
        wait_ready(server.url, timeout_s=180)  # a new process imports torch: slow on a loaded 2-core machine
        remote_before = _fake_in_flight(fake)
        events: list[tuple[str, dict[str, Any]]] = []
        opened = threading.Event()
        streamer = threading.Thread(target=_stream, args=(server.url, fake, events, opened))
        streamer.start()
        futures = [pool.submit(_process, server.url, fake) for _ in range(IN_FLIGHT)]
        # Every request is accepted: its remote calls (two chunks each, plus the stream's two) are in flight.
        _wait_for(lambda: _fake_in_flight(fake) - remote_before >= 2 * IN_FLIGHT + 2, "all remote calls in flight", 60)
        assert opened.wait(10), "the SSE stream did not open"

        server.proc.send_signal(signal.SIGTERM)
        seen = _probe_until_refused(server.url)
        assert set(seen) <= {503, "dropped"}, f"a new request was served during the drain: {seen}"

        responses = [f.result(timeout=SHUTDOWN_TIMEOUT_S + 10) for f in futures]
        streamer.join(SHUTDOWN_TIMEOUT_S + 10)
        code = server.proc.wait(SHUTDOWN_TIMEOUT_S + 10)

    assert code == 0, server.log_path.read_text()[-3000:]
    for response in responses:
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["total"], body["successful"]) == (4, 4)
    kinds = [kind for kind, _ in events]
    assert kinds.count("result") == 2 and kinds[-1] == "summary", kinds
    assert events[-1][1]["successful"] == 2
    access = [line for line in server.log_lines() if line.get("logger") == "chunkserve.access"]
    done = [line for line in access if line["route"] == "/v1/process" and line["status"] == 200]
    assert len(done) == IN_FLIGHT and all(line["chunks"] == 2 for line in done)


def test_drain_turns_ready_503_and_refuses_new_work_at_once(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> None:
    app = create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir))
    with running_server(app) as url:
        wait_ready(url)
        drain: Drain = app.state.drain
        drain.begin()  # what the SIGTERM handler does, before uvicorn is told anything
        ready = httpx.get(f"{url}/ready", trust_env=False)
        work = httpx.post(f"{url}/v1/embeddings", json={"input": "x", "model": "tiny-embed"}, trust_env=False)
        health = httpx.get(f"{url}/health", trust_env=False)
    assert ready.status_code == 503 and ready.json()["detail"] == "shutting down"
    assert work.status_code == 503 and work.headers["retry-after"] == "5"
    assert work.json()["error"]["code"] == "unavailable"
    assert health.status_code == 200  # alive: a liveness probe must not kill a draining server


def test_websocket_jobs_finish_then_the_socket_closes_with_1012(
    fake: str, tiny_bert_dir: Path, tiny_classifier_dir: Path
) -> None:
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir, remote_allowlist=["127.0.0.0/8"])
    app = create_app(settings)
    server = ServerThread(app)
    url = server.start()
    try:
        wait_ready(url)
        job = {"job_id": "slow", "text": TEXT, "chunk_size": 30, "targets": [{"url": f"{fake}/generic?latency_ms=800"}]}
        messages: list[dict[str, Any]] = []
        with ws_connect(url.replace("http", "ws") + "/v1/ws", open_timeout=10) as ws:
            ws.send(json.dumps(job))
            while not messages or messages[-1]["type"] != "progress":
                messages.append(json.loads(ws.recv(10)))
            app.state.drain.begin()
            ws.send(json.dumps({**job, "job_id": "late"}))
            closed = _read_until_closed(ws, messages)
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(url.replace("http", "ws") + "/v1/ws", open_timeout=10)
        assert refused.value.response.status_code == 403
    finally:
        server.stop()
    slow = [m for m in messages if m["job_id"] == "slow"]
    assert [m["type"] for m in slow].count("result") == 2 and slow[-1]["type"] == "done"
    late = [m for m in messages if m["job_id"] == "late"]
    assert [m["type"] for m in late] == ["error"] and late[0]["error"]["type"] == "ShuttingDown"
    assert closed.rcvd is not None and closed.rcvd.code == 1012


def test_workers_share_one_port_and_all_drain_on_sigterm(tiny_bert_dir: Path, tmp_path: Path) -> None:
    args = ["--model", f"tiny-embed={tiny_bert_dir}:embedding", "--device", "cpu", "--torch-threads", "1"]
    with server_process([*args, "--workers", "2"], tmp_path) as server:
        # The port is bound and listening before the workers have started: connections wait in the backlog.
        # Both workers say when their model is ready; waiting for both lines (not for a count of 200s) is no race.
        _wait_for(lambda: _models_ready(server) == 2, "both workers to be ready", timeout_s=120)
        _wait_for(lambda: _ready_now(server.url), "a worker to answer /ready", timeout_s=60)
        for i in range(20):
            body = {"input": f"text {i}"}
            response = httpx.post(f"{server.url}/v1/embeddings", json=body, trust_env=False, timeout=30)
            assert response.status_code == 200, response.text
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(SHUTDOWN_TIMEOUT_S + 10)
    assert code == 0, server.log_path.read_text()[-3000:]
    finished = {line["msg"] for line in server.log_lines() if line["msg"].startswith("Finished server process")}
    assert len(finished) == 2  # two worker processes, each with its own pid, shut down cleanly
