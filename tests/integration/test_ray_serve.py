"""The app on Ray Serve replicas: a local Ray cluster (2 CPUs, small object store), loopback only, tiny models."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from httpx_sse import connect_sse
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.ray_cluster import start_local_ray

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from service.scale.deployment import APP_NAME, DEPLOYMENT_NAME, build  # noqa: E402
from service.scale.options import ReplicaOptions  # noqa: E402

pytestmark = pytest.mark.timeout(240)

TEXT = " ".join(f"Sentence {i} is about food and service." for i in range(20))
MAX_QUEUE = 48
TIGHT = "tight"
STOPPING = "stopping"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _overrides(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> dict[str, Any]:
    return {
        "models": [f"tiny-embed={tiny_bert_dir}:embedding", f"tiny-clf={tiny_classifier_dir}:classification"],
        "device": "cpu",
        "torch_threads": 1,
        "max_batch_size": 16,
        "max_wait_ms": 5,
        "max_batch_tokens": 2048,
        "max_inputs_per_request": 128,
        "max_input_chars": 5000,
        "max_queue": MAX_QUEUE,
        "remote_allowlist": ["127.0.0.0/8"],
        "shutdown_timeout_s": 5,
    }


def _running_replicas(app: str = APP_NAME) -> int:
    status = serve.status().applications[app].deployments[DEPLOYMENT_NAME]
    return int(status.replica_states.get("RUNNING", 0))


@pytest.fixture(scope="module")
def ray_url(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    """Two replicas of the tiny app behind Ray's proxy, plus one tightly limited replica under /tight."""
    start_local_ray()
    port = _free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        overrides = _overrides(tiny_bert_dir, tiny_classifier_dir)
        settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir)
        two = ReplicaOptions(num_replicas=2, num_cpus=0.25, max_ongoing_requests=16, max_queued_requests=64)
        serve.run(build(settings, overrides, two), name=APP_NAME, route_prefix="/", blocking=False)
        tight = ReplicaOptions(num_replicas=1, num_cpus=0.25, max_ongoing_requests=1, max_queued_requests=1)
        serve.run(build(settings, overrides, tight), name=TIGHT, route_prefix=f"/{TIGHT}", blocking=False)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, timeout_s=180)
        wait_ready(f"{url}/{TIGHT}", timeout_s=60)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def _embed(url: str, texts: list[str]) -> list[list[float]]:
    response = httpx.post(f"{url}/v1/embeddings", json={"model": "tiny-embed", "input": texts}, timeout=30)
    assert response.status_code == 200, response.text
    return [item["embedding"] for item in response.json()["data"]]


def test_two_replicas_serve_embeddings_identical_to_chunkserve_serve(ray_url: str, tiny_url: str) -> None:
    assert _running_replicas() == 2
    texts = [f"text number {i} about nothing much" for i in range(6)]
    expected = _embed(tiny_url, texts)
    with ThreadPoolExecutor(4) as pool:  # both replicas take some; 4 x 6 inputs fit one queue
        answers = list(pool.map(lambda _: _embed(ray_url, texts), range(24)))
    for answer in answers:
        np.testing.assert_allclose(answer, expected, atol=1e-5)


def test_process_with_local_and_remote_targets_passes_the_proxy(ray_url: str, fake: str) -> None:
    targets = [{"model": "tiny-embed"}, {"url": f"{fake}/generic"}]
    body = {"text": TEXT, "chunk_size": 120, "targets": targets, "include_text": True}
    response = httpx.post(f"{ray_url}/v1/process", json=body, timeout=60)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["total"] == data["successful"] == len(data["chunks"]) > 4
    assert "".join(c["text"] for c in data["chunks"]) == TEXT
    for chunk, result in zip(data["chunks"], data["results"], strict=True):
        if chunk["index"] % 2 == 0:
            assert result["target"] == "tiny-embed" and len(result["result"]) == 32
        else:
            assert result["target"] == f"{fake}/generic"
            assert result["result"]["echo"] == chunk["text"][:50]


def test_sse_stream_passes_the_proxy(ray_url: str, fake: str) -> None:
    body = {"text": TEXT, "chunk_size": 120, "targets": [{"model": "tiny-embed"}, {"url": f"{fake}/generic"}]}
    with (
        httpx.Client(timeout=60) as client,
        connect_sse(client, "POST", f"{ray_url}/v1/process/stream", json=body) as source,
    ):
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = [(sse.event, json.loads(sse.data)) for sse in source.iter_sse()]
    kinds = [kind for kind, _ in events]
    results = [data for kind, data in events if kind == "result"]
    assert kinds[-1] == "summary", kinds
    summary = events[-1][1]
    assert summary["total"] == summary["successful"] == len(results) > 4
    assert sorted(r["index"] for r in results) == list(range(len(results)))


def test_websocket_job_passes_the_proxy(ray_url: str) -> None:
    with ws_connect(ray_url.replace("http://", "ws://") + "/v1/ws", open_timeout=30) as ws:
        ws.send(json.dumps({"job_id": "a", "text": TEXT, "chunk_size": 100, "targets": [{"model": "tiny-embed"}]}))
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while not any(m["type"] in ("done", "error") for m in messages) and time.monotonic() < deadline:
            messages.append(json.loads(ws.recv(timeout=30)))
    assert [m["type"] for m in messages][-1] == "done", messages[-1]
    results = [m for m in messages if m["type"] == "result"]
    assert all(m["job_id"] == "a" for m in messages)
    assert sorted(r["index"] for r in results) == list(range(messages[-1]["total"])) and len(results) > 2
    assert all(r["success"] and len(r["result"]) == 32 for r in results)


def test_more_inputs_than_a_replicas_queue_can_ever_hold_is_413_naming_the_limit(ray_url: str) -> None:
    # More inputs than the replica's queue holds even when empty: no retry can help, so 413 (not 503) at once.
    body = {"model": "tiny-embed", "input": [f"t{i}" for i in range(MAX_QUEUE + 1)]}
    response = httpx.post(f"{ray_url}/v1/embeddings", json=body, timeout=30)
    assert response.status_code == 413
    assert "retry-after" not in response.headers
    error = response.json()["error"]
    assert error["code"] == "input_too_large" and "CHUNKSERVE_MAX_QUEUE" in error["message"]


def test_rays_own_queue_limit_answers_503_with_retry_after(ray_url: str, fake: str) -> None:
    # /tight runs one request at a time and queues at most one more: of four sent at once (each holding its
    # replica slot 5 s on the slow remote), Ray's proxy itself refuses what does not fit, with Retry-After. At least
    # one, not exactly two: on a loaded machine the last request can reach the proxy after the queue moved on.
    slow = {"text": "One chunk.", "targets": [{"url": f"{fake}/generic?latency_ms=5000"}]}
    with ThreadPoolExecutor(4) as pool:
        sent = [pool.submit(httpx.post, f"{ray_url}/{TIGHT}/v1/process", json=slow, timeout=30) for _ in range(4)]
        responses = [f.result(timeout=60) for f in sent]
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 503} and codes.count(503) >= 1 and 200 in codes, codes
    for refused in (r for r in responses if r.status_code == 503):
        assert int(refused.headers["retry-after"]) >= 1


def _remote_in_flight(fake: str) -> int:
    in_flight: int = httpx.get(f"{fake}/_stats", timeout=10).json()["in_flight"]
    return in_flight


def _stream_events(url: str, body: dict[str, Any], events: list[tuple[str, dict[str, Any]]]) -> None:
    with (
        httpx.Client(timeout=60) as client,
        connect_sse(client, "POST", f"{url}/v1/process/stream", json=body) as source,
    ):
        events.extend((sse.event, json.loads(sse.data)) for sse in source.iter_sse())


def test_a_stopped_replica_drains_like_sigterm_websocket_closes_1012(
    ray_url: str, fake: str, tiny_bert_dir: Path, tiny_classifier_dir: Path
) -> None:
    # One replica of its own, with a long grace period: without the drain at stop, its open WebSocket would hold
    # it until Ray kills it at the end of the grace period, and the client would see an abnormal close (1006).
    overrides = {**_overrides(tiny_bert_dir, tiny_classifier_dir), "shutdown_timeout_s": 60}
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir, shutdown_timeout_s=60)
    one = ReplicaOptions(num_replicas=1, num_cpus=0.25)
    serve.run(build(settings, overrides, one), name=STOPPING, route_prefix=f"/{STOPPING}", blocking=False)
    url = f"{ray_url}/{STOPPING}"
    wait_ready(url, timeout_s=120)
    slow: dict[str, Any] = {
        "text": "First sentence about food. Second sentence about service.",
        "chunk_size": 30,
        "targets": [{"url": f"{fake}/generic?latency_ms=3000"}],
    }
    before = _remote_in_flight(fake)
    messages: list[dict[str, Any]] = []
    events: list[tuple[str, dict[str, Any]]] = []
    with (
        ThreadPoolExecutor(3) as pool,
        ws_connect(url.replace("http://", "ws://") + "/v1/ws", open_timeout=30) as ws,
    ):
        ws.send(json.dumps({**slow, "job_id": "slow"}))
        streamed = pool.submit(_stream_events, url, slow, events)
        posted = pool.submit(httpx.post, f"{url}/v1/process", json=slow, timeout=60)
        deadline = time.monotonic() + 60
        while _remote_in_flight(fake) - before < 6:  # two chunks each of the WebSocket job, the stream, the POST
            assert time.monotonic() < deadline, "the work never got in flight"
            time.sleep(0.05)
        deleting = pool.submit(serve.delete, STOPPING)  # returns once the replica is gone
        try:
            while True:
                messages.append(json.loads(ws.recv(timeout=60)))
        except ConnectionClosed as closed:
            close = closed.rcvd
        response = posted.result(timeout=60)
        streamed.result(timeout=60)
        deleting.result(timeout=90)
    assert close is not None and close.code == 1012 and "shutting down" in close.reason, close
    assert [m["type"] for m in messages].count("result") == 2 and messages[-1]["type"] == "done", messages
    assert all(m["success"] for m in messages if m["type"] == "result")
    assert response.status_code == 200 and response.json()["successful"] == 2, response.text
    kinds = [kind for kind, _ in events]
    assert kinds.count("result") == 2 and kinds[-1] == "summary" and events[-1][1]["successful"] == 2, kinds


def _replica_names(app: str) -> list[str]:
    prefix = f"SERVE_REPLICA::{app}#{DEPLOYMENT_NAME}#"
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]


def test_killing_a_replica_mid_load_answers_every_request(ray_url: str, tiny_url: str) -> None:
    # Runs last in this module: it leaves Serve to replace the killed replica.
    texts = ["first text of the load", "second text of the load"]
    expected = _embed(tiny_url, texts)
    victim = _replica_names(APP_NAME)[0]
    answered = threading.Semaphore(0)

    def call(_: int) -> httpx.Response:
        try:
            return httpx.post(f"{ray_url}/v1/embeddings", json={"model": "tiny-embed", "input": texts}, timeout=60)
        finally:
            answered.release()

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(call, i) for i in range(80)]
        for _ in range(10):  # bounded by the calls' own timeout: the load is under way
            answered.acquire(timeout=60)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        responses = [f.result(timeout=120) for f in futures]
    ok = [r for r in responses if r.status_code == 200]
    failed = [r for r in responses if r.status_code != 200]
    for response in ok:
        np.testing.assert_allclose([d["embedding"] for d in response.json()["data"]], expected, atol=1e-5)
    # Only requests the dead replica had already taken may fail (at most its max_ongoing_requests), each with a
    # status and a message that say so, never a hang.
    assert len(failed) <= 16, [(r.status_code, r.text[:200]) for r in failed]
    for response in failed:
        assert response.status_code in (500, 503), response.text
        assert response.text.strip(), "an error without a message"
    print(f"replica killed mid-load: {len(ok)} answered, {len(failed)} failed: {[r.text[:120] for r in failed]}")
    deadline = time.monotonic() + 120
    while _running_replicas() < 2 and time.monotonic() < deadline:  # Serve replaces the replica
        time.sleep(0.5)
    assert _running_replicas() == 2
    assert victim not in _replica_names(APP_NAME)
    np.testing.assert_allclose(_embed(ray_url, texts), expected, atol=1e-5)
