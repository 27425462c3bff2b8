"""A client that goes away mid-stream frees its generation slot within one decode step, over a real server.

The model's forward pass is paced by the test (one permit per step), so "within one step" is exact: after the
client leaves, one more permit lets the step in progress finish, and the running-sequences gauge must then be 0
with no further step taken. The freed slot then serves the next request (``max_running`` is 1).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.sync.client import connect as ws_connect

from service.api.app import create_app
from service.config import Settings
from service.inference.generation.scheduler import GenerationScheduler
from service.inference.model_entry import ModelEntry
from tests.integration.conftest import wait_ready
from tests.support.hooked import loader_with_forward_hook
from tests.support.servers import running_server

# Long enough that no request can end on its own while the test holds it (the context is 256 tokens).
LONG = 200
STARTED_STEPS = 3  # the prefill and two decode steps run before the client leaves
WAIT_S = 30.0


@dataclass
class Pacer:
    """Gates the model's forward passes: each takes one permit, until ``free``."""

    permits: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    entered: int = 0
    unlimited: bool = False

    def allow(self, steps: int) -> None:
        self.permits.release(steps)

    def free(self) -> None:
        self.unlimited = True
        self.permits.release(1000)

    def take(self) -> None:
        self.entered += 1
        if not self.unlimited and not self.permits.acquire(timeout=60):
            raise RuntimeError("the test never allowed this step")


@dataclass
class Served:
    url: str
    app: FastAPI
    pacer: Pacer

    @property
    def scheduler(self) -> GenerationScheduler:
        return self.app.state.registry.generators["gpt"].scheduler  # type: ignore[no-any-return]

    def gauge(self, name: str) -> float:
        prefix = f'chunkserve_generation_{name}{{model="gpt"}} '
        for line in httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            if line.startswith(prefix):
                return float(line.removeprefix(prefix))
        raise AssertionError(f"no {name} gauge")

    def wait(self, what: str, condition: Any) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_S} s"
            time.sleep(0.01)


@pytest.fixture
def served(tiny_gpt2_dir: Path) -> Iterator[Served]:
    pacer = Pacer()
    settings = Settings(
        models=[ModelEntry(id="gpt", path=tiny_gpt2_dir)], device="cpu", torch_threads=1, generation_max_running=1
    )
    app = create_app(settings, loader=loader_with_forward_hook(pacer.take))
    with running_server(app) as url:
        wait_ready(url)
        try:
            yield Served(url, app, pacer)
        finally:
            pacer.free()  # nothing may stay blocked in the model when the server stops


def _leave_and_check_the_slot_is_freed_within_one_step(served: Served) -> None:
    """Called once the client has gone: the step in progress finishes, and that is the last one."""
    scheduler, pacer = served.scheduler, served.pacer

    def left() -> bool:
        running = scheduler.running_requests()
        return len(running) == 1 and running[0].cancelled

    served.wait("the server seeing the client leave", left)
    assert pacer.entered == STARTED_STEPS + 1  # the model is blocked inside the step after the ones allowed
    assert served.gauge("running_sequences") == 1.0
    pacer.allow(1)  # that step, and only that one
    served.wait("the slot being freed", lambda: served.gauge("running_sequences") == 0.0)
    assert pacer.entered == STARTED_STEPS + 1, "a step ran for a client that had left"
    assert scheduler.reserved == 0 and served.gauge("kv_cache_tokens") == 0.0


def _next_request_reuses_the_slot(served: Served, prompt: str, seen: str) -> None:
    served.pacer.free()
    body = {"model": "gpt", "prompt": prompt, "max_tokens": 4, "temperature": 0}
    answer = httpx.post(f"{served.url}/v1/completions", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    # The same greedy text the abandoned stream had begun: the batch it left behind decodes correctly.
    text = answer.json()["choices"][0]["text"]
    assert text.startswith(seen) or seen.startswith(text), (text, seen)
    assert answer.json()["usage"]["completion_tokens"] == 4
    assert served.gauge("running_sequences") == 0.0 and served.scheduler.reserved == 0


def test_a_dropped_streamed_completion_frees_its_slot_within_one_step(served: Served) -> None:
    prompt = "The quick brown fox jumps over the lazy dog"
    body = {"model": "gpt", "prompt": prompt, "max_tokens": LONG, "temperature": 0, "stream": True}
    served.pacer.allow(STARTED_STEPS)
    seen = ""
    with httpx.Client(timeout=WAIT_S) as client, client.stream("POST", f"{served.url}/v1/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        while not seen:
            line = next(lines)
            if line.startswith("data: "):
                seen += json.loads(line[6:])["choices"][0]["text"]
        served.wait("the allowed steps", lambda: served.pacer.entered == STARTED_STEPS + 1)
        assert served.gauge("running_sequences") == 1.0
    # The client (and its connection) is closed here, mid-stream.
    _leave_and_check_the_slot_is_freed_within_one_step(served)
    _next_request_reuses_the_slot(served, prompt, seen)


def test_a_websocket_closed_mid_chat_frees_its_slot_within_one_step(served: Served) -> None:
    served.pacer.allow(STARTED_STEPS)
    with ws_connect(served.url.replace("http://", "ws://") + "/v1/ws", open_timeout=10) as ws:
        ws.send(json.dumps({"job_id": "t1", "model": "gpt", "message": "hello there", "max_tokens": LONG}))
        first = json.loads(ws.recv(timeout=WAIT_S))
        assert first["type"] == "token" and first["job_id"] == "t1", first
        served.wait("the allowed steps", lambda: served.pacer.entered == STARTED_STEPS + 1)
        assert served.gauge("running_sequences") == 1.0
    _leave_and_check_the_slot_is_freed_within_one_step(served)
    # "hello there" as a chat without a template: the plain role lines the server builds.
    _next_request_reuses_the_slot(served, "user: hello there\nassistant:", first["text"])
