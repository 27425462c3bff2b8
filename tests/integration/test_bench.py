"""The bench harness against real servers on loopback: scenarios, counts, /metrics figures, bounds, open loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

from models.base import Model
from service.api.app import create_app
from service.bench.bare import bare_reference
from service.bench.corpus import load_corpus
from service.bench.figures import phase_figures
from service.bench.load import Bounds, closed_loop, new_client, open_loop, poisson_offsets
from service.bench.raw import measure_raw
from service.bench.runner import Plan, run_plan
from service.bench.scenario import Sample, Workload, error_kind
from service.bench.scrape import scrape
from service.bench.targets import TargetSpec
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server

pytestmark = pytest.mark.timeout(120)
TEXTS = load_corpus(None, 40)


@pytest.fixture(scope="module")
def server(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    """chunkserve on the tiny models, allowed to call the fake remote on loopback."""
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir, remote_allowlist=["127.0.0.0/8"], max_batch_size=4)
    with running_server(create_app(settings)) as url:
        wait_ready(url)
        yield url


def _plan(scenario: str, url: str, fake: str, **workload: Any) -> Plan:
    work = Workload(**{"model": "tiny-embed", "texts": TEXTS, "remote": fake, **workload})
    # The server runs in this process (a uvicorn thread), so its CPU and RSS are this process's.
    target = TargetSpec("url", url=url)
    return Plan(scenario, work, [target], concurrency=[2], bounds=Bounds(requests=6, warmup=2), remote=fake)


def _only(run: dict[str, Any]) -> dict[str, Any]:
    (levels,) = run["servers"].values()
    (figures,) = levels.values()
    assert isinstance(figures, dict)
    return figures


@pytest.mark.parametrize(
    ("scenario", "workload", "inputs"),
    [
        ("embeddings", {"inputs_per_request": 3}, 18),
        ("classify", {"inputs_per_request": 3, "model": "tiny-clf"}, 18),
        ("fanout", {"chunks": 12}, 72),
        ("stream", {"chunks": 12}, 72),
    ],
)
def test_each_scenario_counts_the_inputs_it_sent(
    server: str, fake: str, scenario: str, workload: dict[str, Any], inputs: int
) -> None:
    plan = _plan(scenario, server, fake, **workload)
    plan = replace(plan, server_pid=os.getpid(), progress=False)
    figures = _only(run_plan(plan))
    assert (figures["requests"], figures["errors"], figures["shed_503"]) == (6, 0, 0)
    assert figures["inputs"] == inputs
    batching = figures["batching"]
    if scenario in ("embeddings", "classify"):
        # The server's own /metrics saw exactly the measured inputs go through its batches (warm-up excluded).
        assert batching["batched_inputs"] == inputs
        assert sum(batching["batch_size_counts"].values()) == batching["batches"] >= inputs / 4
        assert figures["tokens"] > 0
    else:
        assert batching["remote_outcomes"] == {"ok": inputs}
        assert figures["remote_calls"] == inputs
    if scenario == "stream":
        assert figures["first_result_p50_ms"] <= figures["p50_ms"]
    assert figures["server_peak_rss_mb"] > 0 and figures["server_cpu_s"] >= 0


def test_process_splits_chunks_between_the_model_and_the_remote(server: str, fake: str) -> None:
    plan = replace(_plan("process", server, fake, targets="mixed", text_chars=3000, chunk_size=200), progress=False)
    figures = _only(run_plan(plan))
    assert (figures["requests"], figures["errors"]) == (6, 0)
    batching = figures["batching"]
    # Round robin over a local and a remote target: every chunk went to exactly one of them.
    assert figures["inputs"] == batching["batched_inputs"] + batching["remote_outcomes"]["ok"]
    assert batching["batched_inputs"] > 0 and batching["remote_outcomes"]["ok"] > 0


async def test_batch_figures_agree_with_a_scrape_of_metrics_around_the_phase(server: str) -> None:
    async with httpx2.AsyncClient(base_url=server) as probe:
        scrape_before = await scrape(probe)
        plan = replace(_plan("embeddings", server, "", inputs_per_request=2), bounds=Bounds(requests=20, warmup=3))
        plan = replace(plan, concurrency=[4], progress=False)
        figures = _only(await asyncio.to_thread(run_plan, plan))
        scrape_after = await scrape(probe)
    assert scrape_before is not None and scrape_after is not None
    key = ("chunkserve_batch_size_sum", (("model", "tiny-embed"),))
    # Around the whole phase the server batched the warm-up (3 x 2) and the measured inputs (20 x 2).
    assert scrape_after[key] - scrape_before.get(key, 0.0) == 46  # no series yet when the server is fresh
    assert figures["batching"]["batched_inputs"] == figures["inputs"] == 40


async def test_bounds_stop_the_run_on_time(fake: str) -> None:
    async def stuck(client: Any, i: int) -> Sample:
        # The fake remote holds this answer for 60 s: only the duration bound can end the phase in time.
        response = await client.post("/generic?latency_ms=60000", json={"text": str(i)})
        return Sample(0.0, error=None if response.status_code == 200 else error_kind(response.status_code))

    ticks: list[int] = []
    async with new_client(fake, 8, 120, None) as client:
        closed = await closed_loop(client, stuck, 3, Bounds(requests=100, duration_s=0.3), lambda: ticks.append(1))
        opened = await open_loop(client, stuck, 50, Bounds(duration_s=0.3), lambda: ticks.append(1), seed=1)
    assert (closed.samples, closed.cut) == ([], 3)
    assert opened.samples == [] and opened.cut == len(opened.offsets_s) > 0
    assert all(t < 0.3 for t in opened.offsets_s)
    assert ticks == []


async def test_open_loop_sends_the_poisson_schedule(fake: str) -> None:
    async def quick(client: Any, i: int) -> Sample:
        response = await client.post("/generic", json={"text": str(i)})
        return Sample(0.0, inputs=1, error=None if response.status_code == 200 else "http")

    async with new_client(fake, 16, 30, None) as client:
        run = await open_loop(client, quick, 80.0, Bounds(requests=40), lambda: None, seed=3)
    assert run.offsets_s == poisson_offsets(80.0, 40, seed=3)
    figures = phase_figures(run)
    assert (figures["sent"], figures["requests"], figures["inputs"]) == (40, 40, 40)
    assert figures["offered_rate_per_s"] == round(40 / run.offsets_s[-1], 2)


def test_the_bare_client_fires_the_same_calls(fake: str) -> None:
    before = httpx.get(f"{fake}/_stats").json()["by_path"].get("/generic", 0)
    report = bare_reference(f"{fake}/generic", calls=20, limit=4, repeats=2)
    after = httpx.get(f"{fake}/_stats").json()["by_path"].get("/generic", 0)
    assert after - before == 60  # one warm-up round and two measured rounds of 20
    assert report["calls"] == 20 and len(report["round_s"]) == 2
    assert report["cpu_us_per_call"] >= 0


def test_measure_raw_reports_the_best_arrival_batch_as_the_ceiling(tiny_embedder: Model) -> None:
    raw = measure_raw(tiny_embedder, TEXTS[:24], batch_sizes=(1, 4), single_calls=5, window=8)
    assert raw["inputs"] == 24
    assert raw["ceiling_inputs_per_s"] == max(raw["arrival_inputs_per_s"].values())
    assert raw["ceiling_inputs_per_s"] == raw["arrival_inputs_per_s"][raw["best_arrival_batch_size"]]
    assert raw["best_sorted_inputs_per_s"] == max(raw["sorted_inputs_per_s"].values())
    assert raw["batch1_p50_ms"] > 0
