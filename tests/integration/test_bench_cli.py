"""``chunkserve bench`` and ``chunkserve tune`` as commands: --vs, the naive baseline, sweeps, report and plots.

Spawned servers (the naive baseline, sweep combinations) are real child processes on the tiny models.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from service.api.app import create_app
from service.bench import plots
from service.bench.report import write_outputs
from service.cli import build_parser, settings_from_args
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def second_url(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    """A second chunkserve instance, batching differently from the first."""
    with running_server(create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir, max_batch_size=2))) as url:
        wait_ready(url)
        yield url


@pytest.fixture(scope="module")
def child_env(tiny_bert_dir: Path) -> dict[str, str]:
    """What servers spawned by the bench command serve: the tiny encoder, on one thread."""
    models = f"tiny-embed={tiny_bert_dir}:embedding"
    return {**os.environ, "CHUNKSERVE_MODELS": models, "CHUNKSERVE_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _chunkserve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "service.cli", *args, "--model", "tiny-embed", "--corpus-size", "30"]
    done = subprocess.run(
        [*command, "--no-progress"], capture_output=True, text=True, timeout=280, env=env, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def _valid_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()  # raises on a truncated or corrupt file
    with Image.open(path) as image:
        assert image.format == "PNG"
        size: tuple[int, int] = image.size
        return size


def test_vs_a_second_chunkserve_and_the_naive_baseline(
    tiny_url: str, second_url: str, child_env: dict[str, str], tmp_path: Path
) -> None:
    args = ["bench", "--url", tiny_url, "--vs", second_url, "--baseline", "naive"]
    args += ["--concurrency", "1,3", "--requests", "6", "--repeats", "2", "--out", str(tmp_path)]
    done = _chunkserve(args, child_env)
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["runs"]["embeddings"]
    first, second = (u.removeprefix("http://") for u in (tiny_url, second_url))
    assert run["targets"] == [first, "naive", second]
    for name in run["targets"]:
        for level in ("c1", "c3"):
            repeats = run["raw_phases"][name][level]
            assert [r["requests"] for r in repeats] == [6, 6] and [r["inputs"] for r in repeats] == [6, 6]
            assert (
                run["servers"][name][level]["spread"]["inputs_per_s"]["min"]
                <= run["servers"][name][level]["inputs_per_s"]
            )
    assert "batching" not in run["servers"]["naive"]["c3"]  # not chunkserve: no /metrics figures
    assert run["servers"]["naive"]["c3"]["server_peak_rss_mb"] > 0  # spawned here: its RSS is measured
    assert run["servers"][second]["c3"]["batching"]["batched_inputs"] == 6
    # Every server against the baseline, pair by pair and level by level, printed too.
    pairs = {(r["a"], r["b"], r["level"]): r["inputs_per_s"] for r in run["ratios"]}
    assert set(pairs) == {(a, "naive", lv) for a in (first, second) for lv in ("c1", "c3")}
    servers = run["servers"]
    assert pairs[(first, "naive", "c3")] == round(
        servers[first]["c3"]["inputs_per_s"] / servers["naive"]["c3"]["inputs_per_s"], 3
    )
    assert f"{second} / naive" in done.stdout
    assert results["environment"]["cpus"] >= 1 and results["environment"]["libraries"]["torch"]
    report = (tmp_path / "report.md").read_text()
    assert all(name in report for name in run["targets"])
    pngs = sorted(tmp_path.glob("*.png"))
    assert {p.name for p in pngs} >= {"embeddings-throughput-closed.png", "embeddings-latency-closed.png"}
    assert "embeddings-batch-sizes.png" in {p.name for p in pngs}
    for png in pngs:
        assert f"]({png.name})" in report
        width, height = _valid_png(png)
        assert width > 100 and height > 100


def test_outputs_without_matplotlib_are_the_text_ones(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(plots, "available", lambda: False)
    fig: dict[str, Any] = {"requests_per_s": 1.0, "inputs_per_s": 1.0, "tokens_per_s": None, "p50_ms": 1.0}
    fig |= {"p90_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0, "errors": 0, "errors_by_kind": {}, "shed_503": 0}
    run = {"scenario": "embeddings", "targets": ["a"], "servers": {"a": {"c1": fig}}, "ratios": []}
    env = {"cpu_model": "cpu", "cpu_flags": [], "cpus_usable": 1, "gpus": [], "platform": "p", "python": "3"}
    results = {"command": "chunkserve bench", "finished_at": "now", "environment": env | {"libraries": {"torch": "x"}}}
    written = write_outputs(results | {"runs": {"embeddings": run}}, tmp_path, plots=True)
    assert [p.name for p in written] == ["results.json", "report.md"]
    assert "| c1 | a |" in (tmp_path / "report.md").read_text()


def test_a_sweep_of_two_settings_ranks_them_and_prints_a_runnable_winner(
    child_env: dict[str, str], tmp_path: Path
) -> None:
    args = ["bench", "--sweep", "max_batch_size=1,4", "--concurrency", "4", "--requests", "12", "--out", str(tmp_path)]
    done = _chunkserve(args, child_env)
    sweep = json.loads((tmp_path / "results.json").read_text())["runs"]["sweep"]
    combos = sweep["combinations"]
    assert sorted(c["settings"]["max_batch_size"] for c in combos) == ["1", "4"]
    assert [c["rank"] for c in combos] == [1, 2]
    assert combos[0]["score"] >= combos[1]["score"] > 0
    # The batch figures of each combination come from its own server: batch size 1 never batched more.
    one = next(c for c in combos if c["settings"]["max_batch_size"] == "1")
    assert one["levels"]["c4"]["batching"]["batch_size_counts"] == {"<=1": 12}
    winner = sweep["winner"]
    assert winner["settings"] == combos[0]["settings"] and winner["command"] in done.stdout
    settings = settings_from_args(build_parser().parse_args(shlex.split(winner["command"])[1:]))
    assert settings.max_batch_size == int(winner["settings"]["max_batch_size"])
    _valid_png(tmp_path / "sweep-heatmap.png")


def test_tune_prints_the_settings_to_use(tiny_bert_dir: Path, child_env: dict[str, str]) -> None:
    env = {k: v for k, v in child_env.items() if k != "CHUNKSERVE_MODELS"}  # tune names the model itself
    args = ["tune", "--model-path", f"tiny-embed={tiny_bert_dir}:embedding", "--sweep", "max_wait_ms=0,1"]
    done = _chunkserve([*args, "--concurrency", "2", "--requests", "6"], env)
    lines = done.stdout.splitlines()
    command = lines[lines.index("Use on this machine:") + 1].strip()
    settings = settings_from_args(build_parser().parse_args(shlex.split(command)[1:]))
    assert settings.max_wait_ms in (0.0, 1.0)
