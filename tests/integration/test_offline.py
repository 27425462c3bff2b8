"""`chunkserve run` end to end: SIGTERM then --resume in real subprocesses, and equality with /v1/process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from models.base import Task
from service.config import Settings
from service.inference.model_entry import ModelEntry
from service.offline import RunOptions, run_async
from tests.integration.conftest import tiny_settings

ROOT = Path(__file__).resolve().parents[2]
WORDS = "the movie food service dog cat guitar world model server token query great bad love hate".split()


def _text(i: int) -> str:
    sentences = [" ".join(WORDS[(i * 7 + j * 3 + k) % len(WORDS)] for k in range(2 + (i + j) % 6)) for j in range(4)]
    return ". ".join(sentences[: 1 + i % 4]).capitalize() + "."


def _lines(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the output must end on a complete line"
    return [orjson.loads(line) for line in data.splitlines()]


def _keyed(lines: list[dict[str, Any]]) -> dict[tuple[str, int | None], dict[str, Any]]:
    keyed = {(line["id"], line["chunk"]): line for line in lines}
    assert len(keyed) == len(lines), "duplicate (document, chunk) lines"
    return keyed


def _cli(*args: str | Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUNKSERVE_")}
    cmd = [sys.executable, "-m", "service.cli", "run", *map(str, args)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` if it still runs and close its pipes (an unclosed pipe warns later, in another test)."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def _wait_for_lines(path: Path, proc: subprocess.Popen[bytes], n: int, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before it could be interrupted"
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.005)
    raise AssertionError(f"no {n} lines in {path} within {timeout_s} s")


@pytest.mark.timeout(400)  # three runs, two of them new processes importing torch, on a shared 2-core machine
async def test_sigterm_then_resume_gives_exactly_the_uninterrupted_results(tmp_path: Path, tiny_bert_dir: Path) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"id": f"d{i}", "text": _text(i)}) + b"\n" for i in range(600)))
    budgets = ["--max-batch-size", "4", "--batch-window", "8", "--max-wait-ms", "1", "--torch-threads", "1"]
    args: list[str | Path] = [src, "--model", f"tiny={tiny_bert_dir}:embedding", "--device", "cpu", *budgets]
    args += ["--id-field", "id", "--chunk-size", "30", "--aggregate", "mean"]
    out = tmp_path / "out.jsonl"

    proc = _cli(*args, "-o", out)
    try:
        _wait_for_lines(out, proc, 40)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        _reap(proc)
    assert proc.returncode == 143, err.decode()
    cut = _lines(out)
    assert b"interrupted (SIGTERM)" in err

    resume = _cli(*args, "-o", out, "--resume", "--quiet")
    try:
        _, err = resume.communicate(timeout=180)
    finally:
        _reap(resume)
    assert resume.returncode == 0, err.decode()

    reference = tmp_path / "reference.jsonl"
    options = RunOptions.build([src], reference, id_field="id", chunk_size=30, aggregate="mean", quiet=True)
    tiny = ModelEntry(id="tiny", path=tiny_bert_dir, task=Task.EMBEDDING)
    settings = Settings(models=[tiny], device="cpu", torch_threads=1, max_batch_size=4, batch_window=8, max_wait_ms=1)
    await run_async(options, settings)
    expected, resumed = _keyed(_lines(reference)), _keyed(_lines(out))
    assert 0 < len(cut) < len(expected)
    assert resumed.keys() == expected.keys()
    for key, line in expected.items():
        got = resumed[key]
        assert {k: v for k, v in got.items() if k != "result"} == {k: v for k, v in line.items() if k != "result"}
        np.testing.assert_allclose(got["result"], line["result"], atol=1e-5)


async def test_results_equal_what_v1_process_returns(
    tmp_path: Path, tiny_url: str, tiny_bert_dir: Path, tiny_classifier_dir: Path
) -> None:
    texts = {f"doc{i}": " ".join(_text(i * 5 + k) for k in range(1 + i)) for i in range(5)}
    src = tmp_path / "docs.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"key": k, "body": t}) + b"\n" for k, t in texts.items()))
    body: dict[str, Any] = {
        "chunk_size": 60,
        "overlap": 10,
        "targets": [{"model": "tiny-embed"}, {"model": "tiny-clf"}],
        "assignment": "broadcast",
    }
    out = tmp_path / "out.jsonl"
    options = RunOptions.build(
        [src], out, text_field="body", id_field="key", chunk_size=60, overlap=10,
        targets=["tiny-embed", "tiny-clf"], assignment="broadcast", quiet=True,
    )  # fmt: skip
    summary = await run_async(options, tiny_settings(tiny_bert_dir, tiny_classifier_dir))
    offline = {(line["id"], line["chunk"], line["target"]): line for line in _lines(out)}
    assert summary.ok and len(offline) == summary.chunks

    async with httpx.AsyncClient(base_url=tiny_url, timeout=60) as client:
        for doc_id, text in texts.items():
            response = await client.post("/v1/process", json={"text": text, **body})
            assert response.status_code == 200, response.text
            served = response.json()
            spans = {c["index"]: (c["start"], c["end"]) for c in served["chunks"]}
            assert len(served["results"]) == 2 * len(spans)
            for result in served["results"]:
                line = offline.pop((doc_id, result["index"], result["target"]))
                assert (line["start"], line["end"]) == spans[result["index"]]
                assert (line["success"], line["error"]) == (result["success"], result["error"]) == (True, None)
                if result["target"] == "tiny-embed":
                    np.testing.assert_allclose(line["result"], result["result"], atol=1e-5)
                else:
                    assert line["result"]["label"] == result["result"]["label"]
                    np.testing.assert_allclose(line["result"]["score"], result["result"]["score"], atol=1e-5)
    assert not offline, "offline lines that /v1/process did not produce"
