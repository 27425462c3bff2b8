"""The fake remote on a real uvicorn: its answers, its per-request knobs and the counters other tests rely on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from service.bench.servers.fake_remote import FakeRemoteConfig, create_fake_remote, fake_embedding
from tests.support.servers import ServerThread, running_server
from tests.support.waiting import until


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    with running_server(create_fake_remote(FakeRemoteConfig(seed=0))) as url:
        yield url


@pytest.fixture
def client(fake: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake, trust_env=False, timeout=10) as client:
        client.post("/_reset").raise_for_status()
        yield client


def _stats(client: httpx.Client) -> dict[str, Any]:
    stats: dict[str, Any] = client.get("/_stats").json()
    return stats


def _wait_for(client: httpx.Client, done: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    stats = _stats(client)
    while not done(stats) and time.monotonic() < deadline:
        time.sleep(0.02)
        stats = _stats(client)
    return stats


@pytest.mark.parametrize("path", ["/generic", "/"])
def test_generic_answer_is_computed_from_the_text(client: httpx.Client, path: str) -> None:
    text = "The movie was long, but the food was great. " * 3
    response = client.post(path, json={"text": text})
    assert response.status_code == 200
    assert response.json() == {
        "text_length": len(text),
        "echo": text[:50],
        "upper": text.upper()[:50],
        "words": len(text.split()),
    }


def test_embeddings_are_deterministic_unit_vectors(client: httpx.Client) -> None:
    texts = ["first chunk", "second chunk"]
    body = client.post("/v1/embeddings", json={"input": texts, "model": "m"}).json()
    assert body["object"] == "list" and body["model"] == "m"
    assert [d["index"] for d in body["data"]] == [0, 1]
    vectors = [d["embedding"] for d in body["data"]]
    assert vectors == [fake_embedding(t, 8) for t in texts]
    assert all(len(v) == 8 and math.isclose(math.hypot(*v), 1.0) for v in vectors)
    assert vectors[0] != vectors[1]
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    again = client.post("/v1/embeddings", json={"input": "first chunk", "dimensions": 16}).json()
    assert len(again["data"]) == 1 and again["data"][0]["embedding"] == fake_embedding("first chunk", 16)


def test_chat_echoes_the_last_user_message(client: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "old question"},
        {"role": "assistant", "content": "old answer"},
        {"role": "user", "content": [{"type": "text", "text": "x" * 300}]},
    ]
    body = client.post("/v1/chat/completions", json={"model": "c", "messages": messages}).json()
    assert body["object"] == "chat.completion" and body["model"] == "c"
    [choice] = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "echo: " + "x" * 200}
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_models_are_listed(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list" and {m["id"] for m in body["data"]} == {"fake-embed", "fake-chat"}


def test_429_with_retry_after_fails_only_the_first_attempts_of_each_text(client: httpx.Client) -> None:
    url = "/generic?status=429&retry_after=0.05&fail_times=1"
    for text in ["chunk one", "chunk two"]:
        first = client.post(url, json={"text": text})
        assert first.status_code == 429 and first.headers["retry-after"] == "0.05"
        assert first.json()["error"]["code"] == 429
        retry = client.post(url, json={"text": text})
        assert retry.status_code == 200 and retry.json()["echo"] == text
        assert "retry-after" not in retry.headers
    assert _stats(client)["statuses"] == {"429": 2, "200": 2}
    client.post("/_reset")
    assert client.post(url, json={"text": "chunk one"}).status_code == 429


def test_fail_times_can_be_keyed_explicitly(client: httpx.Client) -> None:
    url = "/generic?fail=503&fail_times=2&key=job-1"
    codes = [client.post(url, json={"text": f"text {i}"}).status_code for i in range(4)]
    assert codes == [503, 503, 200, 200]


def test_knobs_also_come_as_headers_and_the_query_wins(client: httpx.Client) -> None:
    headers = {"X-Fake-Status": "503", "X-Fake-Retry-After": "2"}
    response = client.post("/generic", json={"text": "a"}, headers=headers)
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    assert client.post("/generic?status=418", json={"text": "a"}, headers=headers).status_code == 418


@pytest.mark.parametrize(("query", "status"), [("fail=500", 500), ("fail_rate=1", 500), ("status=404", 404)])
def test_failures_are_answered_with_a_json_error(client: httpx.Client, query: str, status: int) -> None:
    response = client.post(f"/generic?{query}", json={"text": "a"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == status


def test_malformed_is_a_200_that_is_not_json(client: httpx.Client) -> None:
    response = client.post("/generic?malformed=1", json={"text": "some text"})
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_drip_sends_the_same_body_in_pieces(client: httpx.Client) -> None:
    expected = client.post("/generic", json={"text": "drip drop"}).content
    with client.stream("POST", "/generic?drip_ms=10", json={"text": "drip drop"}) as response:
        pieces = list(response.iter_raw())
    assert b"".join(pieces) == expected
    assert len(pieces) > 1


@pytest.mark.parametrize("chunked", [False, True])
def test_big_answers_have_exactly_the_asked_size(client: httpx.Client, chunked: bool) -> None:
    response = client.post(f"/generic?big=300000&chunked={int(chunked)}", json={"text": "a"})
    assert response.status_code == 200 and len(response.content) == 300_000
    assert set(response.json()) == {"pad"}
    assert ("content-length" in response.headers) is not chunked


def test_redirect_is_a_302_to_the_given_url(client: httpx.Client) -> None:
    response = client.post("/generic?redirect=http://169.254.169.254/latest/meta-data", json={"text": "a"})
    assert response.status_code == 302
    assert response.headers["location"] == "http://169.254.169.254/latest/meta-data"


async def test_per_request_latency_holds_requests_in_flight_together(client: httpx.Client, fake: str) -> None:
    # A latency far longer than sending 50 requests can take, however loaded the machine: all 50 are held at once
    # (waited for, not timed), then the client leaves and each is counted abandoned.
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=fake, trust_env=False, timeout=120, limits=limits) as many:
        calls = [
            asyncio.create_task(many.post("/generic?latency_ms=60000", json={"text": f"text {i}"})) for i in range(50)
        ]
        await until(lambda: _stats(client)["in_flight"] == 50, timeout_s=60, step_s=0.02)
        for call in calls:
            call.cancel()
        await asyncio.wait(calls)
    stats = _wait_for(client, lambda s: s["abandoned"] == 50)
    assert (stats["peak_in_flight"], stats["abandoned"], stats["completed"], stats["in_flight"]) == (50, 50, 0, 0)
    assert stats["requests"] == stats["by_path"]["/generic"] == 50


def test_a_client_that_times_out_is_counted_abandoned(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post("/generic?latency_ms=2000", json={"text": "slow"}, timeout=0.2)
    stats = _wait_for(client, lambda s: s["abandoned"] == 1)
    assert (stats["abandoned"], stats["completed"], stats["in_flight"]) == (1, 0, 0)


def test_a_client_that_leaves_mid_drip_is_counted_abandoned(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post("/generic?drip_ms=2000", json={"text": "slow drip"}, timeout=0.3)
    stats = _wait_for(client, lambda s: s["abandoned"] == 1)
    assert (stats["abandoned"], stats["completed"], stats["in_flight"]) == (1, 0, 0)


def test_reset_zeroes_the_counters(client: httpx.Client) -> None:
    client.post("/generic", json={"text": "a"})
    client.post("/v1/embeddings", json={"input": "a"})
    stats = _stats(client)
    assert stats["requests"] == 2 and stats["by_path"] == {"/generic": 1, "/v1/embeddings": 1}
    reset = client.post("/_reset").json()
    assert reset == _stats(client)
    assert reset == {
        "requests": 0,
        "in_flight": 0,
        "peak_in_flight": 0,
        "completed": 0,
        "abandoned": 0,
        "by_path": {},
        "statuses": {},
    }


@pytest.mark.parametrize(("query", "knob"), [("latency_ms=soon", "latency_ms"), ("status=99", "status")])
def test_a_bad_knob_is_a_400_naming_it(client: httpx.Client, query: str, knob: str) -> None:
    response = client.post(f"/generic?{query}", json={"text": "a"})
    assert response.status_code == 400 and knob in response.json()["error"]["message"]


def test_a_bad_body_is_a_400(client: httpx.Client) -> None:
    assert client.post("/generic", content=b"not json").status_code == 400
    assert client.post("/v1/embeddings", json={"input": []}).status_code == 400
    assert client.post("/v1/chat/completions", json={"messages": "hi"}).status_code == 400


def test_config_rejects_values_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="fail_rate"):
        FakeRemoteConfig(fail_rate=2.0)
    with pytest.raises(ValueError, match="latency_dist"):
        FakeRemoteConfig(latency_dist="normal")  # type: ignore[arg-type]


def test_running_server_reports_a_failing_lifespan() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("model directory missing")
        yield

    failing = Starlette(lifespan=lifespan)
    with (
        pytest.raises(RuntimeError, match=r"lifespan failed at startup: .*model directory missing"),
        running_server(failing, start_timeout_s=10),
    ):
        pass


async def test_server_thread_serves_under_async_with() -> None:
    async with (
        ServerThread(create_fake_remote()) as url,
        httpx.AsyncClient(base_url=url, trust_env=False) as client,
    ):
        assert (await client.get("/v1/models")).status_code == 200
