"""A full generation queue answers 503 with Retry-After at once, over a real server; the queued work still ends."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

import httpx

from service.api.app import create_app
from service.config import Settings
from service.inference.model_entry import ModelEntry
from tests.integration.conftest import wait_ready
from tests.support.hooked import loader_with_forward_hook
from tests.support.servers import running_server


def _waiting(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith('chunkserve_generation_waiting_sequences{model="gpt"}'):
            return float(line.split()[-1])
    return -1.0


def test_a_full_generation_queue_is_503_with_retry_after(tiny_gpt2_dir: Path) -> None:
    gate, entered = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        assert gate.wait(60), "the test never opened the gate"

    loader = loader_with_forward_hook(hold)

    settings = Settings(
        models=[ModelEntry(id="gpt", path=tiny_gpt2_dir)],
        device="cpu",
        torch_threads=1,
        generation_max_running=1,
        generation_max_queue=1,
    )
    body = {"model": "gpt", "prompt": "hello", "max_tokens": 2, "temperature": 0}
    with running_server(create_app(settings, loader=loader)) as url:
        wait_ready(url)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            try:
                running = pool.submit(httpx.post, f"{url}/v1/completions", json=body, timeout=60)
                assert entered.wait(30), "the first request never reached the model"
                queued = pool.submit(httpx.post, f"{url}/v1/completions", json=body, timeout=60)
                deadline = time.monotonic() + 30
                while _waiting(url) != 1.0:
                    assert time.monotonic() < deadline, "the second request never queued"
                    time.sleep(0.02)
                refused = httpx.post(f"{url}/v1/completions", json=body, timeout=10)
            finally:
                gate.set()
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"]["code"] == "overloaded"
            for answer in (running.result(timeout=60), queued.result(timeout=60)):
                assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] >= 1
