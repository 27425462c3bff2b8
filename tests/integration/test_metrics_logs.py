"""/metrics moves under load; one structured access line per request; no secret, traceback or path leaks."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.sync.client import connect as ws_connect

from service.api.app import create_app
from service.cli import main
from service.observability.logs import JsonFormatter
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server

SECRET = "sk-test-0123456789abcdef"
TEXT = "One sentence here. Another sentence there. A third one to close."


def _boom() -> None:
    raise RuntimeError(f"failed reading {Path(__file__).resolve()}")


@pytest.fixture(scope="module")
def app(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> FastAPI:
    settings = tiny_settings(
        tiny_bert_dir,
        tiny_classifier_dir,
        max_wait_ms=20,
        remote_allowlist=["127.0.0.0/8"],
        remote_api_keys={"127.0.0.1": SECRET},
    )
    app = create_app(settings)
    app.add_api_route("/boom", _boom)  # stands in for any bug that escapes a route
    return app


@pytest.fixture(scope="module")
def server(app: FastAPI) -> Iterator[str]:
    with running_server(app) as url:
        wait_ready(url)
        yield url


def _sample(server: str, name: str, **labels: str) -> float:
    """One sample of /metrics by name and exact label set (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}}" if labels else name
    for line in httpx.get(f"{server}/metrics", trust_env=False).text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _access_lines(caplog: pytest.LogCaptureFixture, **match: Any) -> list[dict[str, Any]]:
    """Access-log fields of the lines matching ``match``, waiting a little for the first: the server writes a line
    after its last byte went out, so the client can be faster."""
    deadline = time.monotonic() + 10
    while True:
        fields = [r.fields for r in caplog.records if r.name == "chunkserve.access"]  # type: ignore[attr-defined]
        lines = [f for f in fields if all(f.get(k) == v for k, v in match.items())]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


async def test_batch_size_histogram_moves_under_a_burst(server: str) -> None:
    count_before = _sample(server, "chunkserve_batch_size_count", model="tiny-embed")
    sum_before = _sample(server, "chunkserve_batch_size_sum", model="tiny-embed")
    requests_before = _sample(
        server, "chunkserve_request_duration_seconds_count", method="POST", route="/v1/embeddings", status="200"
    )
    async with httpx.AsyncClient(base_url=server, timeout=60, trust_env=False) as client:
        bodies = [{"input": [f"burst {i} item {j}" for j in range(4)], "model": "tiny-embed"} for i in range(16)]
        responses = await asyncio.gather(*(client.post("/v1/embeddings", json=b) for b in bodies))
    assert [r.status_code for r in responses] == [200] * 16
    batches = _sample(server, "chunkserve_batch_size_count", model="tiny-embed") - count_before
    inputs = _sample(server, "chunkserve_batch_size_sum", model="tiny-embed") - sum_before
    assert inputs == 64  # every input was computed in exactly one batch
    assert 4 <= batches < 16  # batches of up to 16 (the max), so fewer calls than requests
    requests = _sample(
        server, "chunkserve_request_duration_seconds_count", method="POST", route="/v1/embeddings", status="200"
    )
    assert requests - requests_before == 16
    assert _sample(server, "chunkserve_queue_depth", model="tiny-embed") == 0
    assert _sample(server, "process_resident_memory_bytes") > 10_000_000


def test_request_histogram_uses_route_templates_not_raw_paths(server: str) -> None:
    for path in ("/nope/1", "/nope/2", "/v1/models/tiny-embed"):
        httpx.get(f"{server}{path}", trust_env=False)
    assert _sample(server, "chunkserve_request_duration_seconds_count", method="GET", route="unmatched", status="404")
    route = "/v1/models/{model_id:path}"
    assert _sample(server, "chunkserve_request_duration_seconds_count", method="GET", route=route, status="200") >= 1


def test_remote_calls_are_counted_by_host_and_outcome(server: str, fake: str) -> None:
    before = _sample(server, "chunkserve_remote_calls_total", host="127.0.0.1", outcome="ok")
    body = {"text": TEXT, "chunk_size": 30, "targets": [{"url": f"{fake}/generic"}]}
    response = httpx.post(f"{server}/v1/process", json=body, timeout=60, trust_env=False)
    assert response.status_code == 200 and response.json()["successful"] == 3
    assert _sample(server, "chunkserve_remote_calls_total", host="127.0.0.1", outcome="ok") - before == 3


def test_each_request_gets_one_access_line_with_its_batch_stats(server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chunkserve.access")
    body = {"text": TEXT, "chunk_size": 30, "targets": [{"model": "tiny-embed"}]}
    response = httpx.post(f"{server}/v1/process", json=body, headers={"X-Request-ID": "trace-me-1"}, timeout=60)
    assert response.status_code == 200
    (line,) = _access_lines(caplog, request_id="trace-me-1")
    assert line["route"] == "/v1/process" and line["method"] == "POST" and line["status"] == 200
    assert line["principal"] is None and line["latency_ms"] > 0
    assert line["chunks"] == 3 and line["inputs"] == 3
    assert 1 <= line["batches"] <= 3 and 1 <= line["largest_batch"] <= 16 and line["compute_ms"] > 0


def test_a_websocket_connection_logs_one_line_for_all_its_jobs(server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chunkserve.access")
    with ws_connect(server.replace("http", "ws") + "/v1/ws", open_timeout=10) as ws:
        for job_id in ("a", "b"):
            ws.send(
                json.dumps({"job_id": job_id, "text": TEXT, "chunk_size": 30, "targets": [{"model": "tiny-embed"}]})
            )
            while json.loads(ws.recv(10))["type"] != "done":
                pass
    lines = _access_lines(caplog, route="/v1/ws")
    assert len(lines) == 1 and lines[0]["status"] == 101 and lines[0]["chunks"] == 6


def test_an_unhandled_error_is_a_json_500_without_traceback_or_path(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chunkserve.access")
    response = httpx.get(f"{server}/boom", trust_env=False)
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["type"] == "server_error" and body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text and str(Path(__file__).parent) not in response.text
    assert "RuntimeError" not in response.text
    (line,) = _access_lines(caplog, request_id=body["request_id"])
    assert line["status"] == 500 and line["error"] is True


def test_secrets_never_reach_the_logs(server: str, fake: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"text": TEXT, "chunk_size": 30, "targets": [{"url": f"{fake}/v1", "protocol": "openai-chat"}]}
    response = httpx.post(f"{server}/v1/process", json=body, timeout=60, trust_env=False)
    assert response.status_code == 200 and response.json()["successful"] == 3, response.text
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(r) for r in caplog.records)
    assert text and SECRET not in text


def test_the_settings_line_masks_secret_values(
    tiny_bert_dir: Path, tiny_classifier_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chunkserve")
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir, remote_api_keys={"127.0.0.1": SECRET})
    with running_server(create_app(settings)):
        pass
    (record,) = [r for r in caplog.records if r.getMessage() == "starting"]
    line = json.loads(JsonFormatter().format(record))
    assert line["settings"]["remote_api_keys"] == {"127.0.0.1": "**********"}
    assert SECRET not in json.dumps(line)


def test_json_lines_carry_fields_and_exceptions_on_one_line() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("chunkserve.x", logging.ERROR, __file__, 1, "failed %s", ("job",), exc_info)
    record.fields = {"request_id": "r1", "msg": "must not overwrite", "status": 500}
    text = JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert line["msg"] == "failed job" and line["level"] == "error" and line["logger"] == "chunkserve.x"
    assert line["request_id"] == "r1" and line["status"] == 500 and "ValueError: bad" in line["exc"]


def test_probe_exits_0_only_when_the_server_is_ready(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> None:
    app = create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir))
    with running_server(app) as url:
        wait_ready(url)
        port = str(httpx.URL(url).port)
        assert main(["probe", "--port", port]) == 0
        app.state.drain.begin()
        assert main(["probe", "--port", port]) == 1  # /ready is 503 while draining
    assert main(["probe", "--port", port, "--timeout", "1"]) == 1  # nobody listening
