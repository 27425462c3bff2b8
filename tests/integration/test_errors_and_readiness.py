"""Bad input gets a clear 4xx naming the field; readiness tells the truth before load, after a failure, after death."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from models.base import Model
from models.loading import LoadOptions
from service.api.app import create_app
from service.inference.model_entry import ModelEntry
from service.runtime import default_loader
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server


def _error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert "Traceback" not in response.text and "site-packages" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]
    error: dict[str, object] = body["error"]
    return error


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({"input": "", "model": "tiny-embed"}, 422, "input"),
        ({"input": [], "model": "tiny-embed"}, 422, "input"),
        ({"input": ["ok", ""], "model": "tiny-embed"}, 422, "input[1]"),
        ({"model": "tiny-embed"}, 422, "input"),
        ({"input": [1, 2], "model": "tiny-embed"}, 422, "input"),
        ({"input": "x", "model": "nope"}, 404, "model"),
        ({"input": "x", "model": "tiny-clf"}, 422, "model"),
        ({"input": ["a"] * 65, "model": "tiny-embed"}, 413, "input"),
        ({"input": ["a", "b" * 5001], "model": "tiny-embed"}, 413, "input[1]"),
        ({"input": "x", "model": "tiny-embed", "dimensions": 33}, 422, "dimensions"),
        ({"input": "x", "model": "tiny-embed", "dimensions": 0}, 422, "dimensions"),
        ({"input": "x", "model": "tiny-embed", "encoding_format": "hex"}, 422, "encoding_format"),
    ],
)
def test_bad_embedding_requests_name_the_field(
    tiny_url: str, payload: dict[str, object], status: int, param: str
) -> None:
    response = httpx.post(f"{tiny_url}/v1/embeddings", json=payload)
    assert response.status_code == status, response.text
    error = _error(response)
    assert error["param"] == param or str(error["param"]).startswith(param), error
    assert isinstance(error["message"], str) and error["message"]


def test_validation_errors_do_not_echo_the_input(tiny_url: str) -> None:
    secret = "very-private-text-" * 20
    response = httpx.post(f"{tiny_url}/v1/embeddings", json={"input": [secret, ""], "model": "tiny-embed"})
    assert response.status_code == 422
    assert "very-private-text" not in response.text


def test_malformed_json_and_unknown_route(tiny_url: str) -> None:
    # 30 s, not httpx's default 5 s: one run of the suite failed here with two suites sharing 2 cores (load ~19).
    response = httpx.post(
        f"{tiny_url}/v1/embeddings", content=b'{"input": ', headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 422
    assert "JSON" in str(_error(response)["message"])
    missing = httpx.get(f"{tiny_url}/v1/nothing-here", timeout=30)
    assert missing.status_code == 404
    assert _error(missing)["message"]


def test_ready_is_503_until_models_are_loaded(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> None:
    release = threading.Event()

    def slow_loader(entry: ModelEntry, options: LoadOptions) -> Model:
        assert release.wait(30), "test never released the loader"
        return default_loader(entry, options)

    app = create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir), loader=slow_loader)
    with running_server(app) as url:
        ready = httpx.get(f"{url}/ready")
        assert ready.status_code == 503 and "loading" in ready.json()["detail"]
        assert httpx.get(f"{url}/health").status_code == 200
        early = httpx.post(f"{url}/v1/embeddings", json={"input": "x", "model": "tiny-embed"})
        assert early.status_code == 503 and "retry-after" in early.headers
        release.set()
        wait_ready(url)
        later = httpx.post(f"{url}/v1/embeddings", json={"input": "x", "model": "tiny-embed"})
        assert later.status_code == 200 and len(later.json()["data"][0]["embedding"]) == 32


def test_ready_turns_503_when_a_batcher_dies(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> None:
    app = create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir))
    with running_server(app) as url:
        wait_ready(url)
        engine = app.state.registry.engines["tiny-embed"]
        loop = engine.batcher.loop_task.get_loop()
        loop.call_soon_threadsafe(engine.batcher.loop_task.cancel)
        deadline = time.monotonic() + 10
        while engine.alive and time.monotonic() < deadline:
            time.sleep(0.02)
        response = httpx.get(f"{url}/ready")
        assert response.status_code == 503
        assert "tiny-embed" in response.json()["detail"]
        # The other model keeps serving.
        ok = httpx.post(f"{url}/v1/classify", json={"input": "fine", "model": "tiny-clf"})
        assert ok.status_code == 200


def test_on_loaded_runs_once_when_every_model_is_ready(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> None:
    seen: list[int] = []
    app = create_app(
        tiny_settings(tiny_bert_dir, tiny_classifier_dir),
        on_loaded=lambda: seen.append(len(app.state.registry.engines)),
    )
    with running_server(app) as url:
        wait_ready(url)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    assert seen == [2]


def test_settings_that_cannot_work_fail_start_up_with_the_fix(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> None:
    reasons: list[str] = []
    loaded: list[bool] = []
    app = create_app(
        tiny_settings(tiny_bert_dir, tiny_classifier_dir, max_batch_tokens=16),
        on_fatal=reasons.append,
        on_loaded=lambda: loaded.append(True),
    )
    with running_server(app) as url:
        deadline = time.monotonic() + 30
        while not reasons and time.monotonic() < deadline:
            time.sleep(0.05)
        health = httpx.get(f"{url}/health")
    assert loaded == []
    assert health.status_code == 503
    assert reasons and "CHUNKSERVE_MAX_BATCH_TOKENS" in reasons[0]
    assert "max_batch_tokens" in health.json()["detail"]


def test_truncation_off_refuses_long_inputs_with_413(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> None:
    app = create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir, truncate=False))
    with running_server(app) as url:
        wait_ready(url)
        long_text = "word " * 400
        response = httpx.post(f"{url}/v1/embeddings", json={"input": ["fine", long_text], "model": "tiny-embed"})
        assert response.status_code == 413
        assert _error(response)["param"] == "input[1]"
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "fine", "model": "tiny-embed"}).status_code == 200


def test_overload_answers_503_with_retry_after_at_once(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> None:
    release, entered = threading.Event(), threading.Event()
    app = create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir, max_queue=4, max_batch_size=1, batch_window=1))
    with running_server(app) as url:
        wait_ready(url)
        engine = app.state.registry.engines["tiny-embed"]
        real_predict = engine.model.predict

        def gated_predict(batch: list[object]) -> list[object]:
            entered.set()
            release.wait(30)
            return real_predict(batch)  # type: ignore[no-any-return]

        engine.model.predict = gated_predict  # hold the model so the queue fills

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:

                def send(i: int) -> asyncio.Task[httpx.Response]:
                    body = {"input": f"t{i}", "model": "tiny-embed"}
                    return asyncio.create_task(client.post("/v1/embeddings", json=body))

                tasks = [send(0)]
                for _ in range(1000):  # bounded: until the first is inside the model
                    if entered.is_set():
                        break
                    await asyncio.sleep(0.01)
                tasks += [send(i) for i in range(1, 5)]
                for _ in range(1000):  # bounded: until the other four wait in the queue
                    if engine.batcher.queue_depth >= 4:
                        break
                    await asyncio.sleep(0.01)
                refused = await client.post("/v1/embeddings", json={"input": "one too many", "model": "tiny-embed"})
                release.set()
                return [refused, *await asyncio.gather(*tasks)]

        refused, *accepted = asyncio.run(burst())
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert _error(refused)["code"] == "overloaded"
        assert [r.status_code for r in accepted] == [200] * 5
