"""``chunkserve run --ray``: the same lines as ``chunkserve run`` from a pool of Ray Data actors; --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from service.cli import main
from tests.support.ray_cluster import start_local_ray

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
WORDS = "the movie food service dog cat guitar world model server token query great bad love hate".split()
Key = tuple[str, int, str]


def _text(i: int) -> str:
    sentences = [" ".join(WORDS[(i * 7 + j * 3 + k) % len(WORDS)] for k in range(2 + (i + j) % 6)) for j in range(6)]
    return ". ".join(sentences[: 2 + i % 5]).capitalize() + "."


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    start_local_ray()
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for i in range(24):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(exist_ok=True)
        (folder / f"doc{i:02d}.txt").write_text(_text(i), encoding="utf-8")
    return root


def _args(tiny_bert_dir: Path, corpus: Path, output: Path, fake: str, *extra: str) -> list[str]:
    return [
        "run", str(corpus), "-o", str(output), "--quiet", "--device", "cpu", "--torch-threads", "1",
        "--model", f"tiny-embed={tiny_bert_dir}:embedding", "--chunk-size", "40",
        "--target", "tiny-embed", "--target", f"{fake}/generic", "--remote-allowlist", "127.0.0.0/8",
        *extra,
    ]  # fmt: skip


def _lines(path: Path) -> dict[Key, dict[str, Any]]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the output must end on a complete line"
    lines = [orjson.loads(raw) for raw in data.splitlines()]
    keyed = {(line["id"], line["chunk"], line["target"]): line for line in lines}
    assert len(keyed) == len(lines), "duplicate (document, chunk, target) lines"
    return keyed


def _assert_same(got: dict[Key, dict[str, Any]], expected: dict[Key, dict[str, Any]]) -> None:
    assert got.keys() == expected.keys()
    for key, line in expected.items():
        other = got[key]
        assert (other["start"], other["end"], other["success"]) == (line["start"], line["end"], line["success"])
        if key[2] == "tiny-embed":  # batched differently: equal up to float rounding
            np.testing.assert_allclose(other["result"], line["result"], atol=1e-5)
        else:
            assert other["result"] == line["result"]


RAY = ("--ray", "--replicas", "2", "--replica-cpus", "0.25")


def test_run_on_ray_gives_the_same_lines_as_run(
    local_ray: None, tiny_bert_dir: Path, corpus: Path, fake: str, tmp_path: Path
) -> None:
    plain, on_ray = tmp_path / "plain.jsonl", tmp_path / "ray.jsonl"
    assert main(_args(tiny_bert_dir, corpus, plain, fake)) == 0
    assert main(_args(tiny_bert_dir, corpus, on_ray, fake, *RAY)) == 0
    expected = _lines(plain)
    assert len(expected) > 2 * 24  # several chunks per document, at both targets
    assert all(line["success"] for line in expected.values())
    _assert_same(_lines(on_ray), expected)


def test_resume_completes_an_interrupted_ray_run_without_duplicates(
    local_ray: None, tiny_bert_dir: Path, corpus: Path, fake: str, tmp_path: Path
) -> None:
    full, cut = tmp_path / "full.jsonl", tmp_path / "cut.jsonl"
    assert main(_args(tiny_bert_dir, corpus, full, fake, *RAY)) == 0
    expected = _lines(full)
    # What a run killed mid-way leaves: some whole lines, then a torn one.
    raw = full.read_bytes().splitlines(keepends=True)
    kept = raw[: len(raw) // 3]
    cut.write_bytes(b"".join(kept) + raw[len(kept)][:25])
    assert main(_args(tiny_bert_dir, corpus, cut, fake, *RAY)) == 2  # an existing output needs --resume
    assert main(_args(tiny_bert_dir, corpus, cut, fake, *RAY, "--resume")) == 0
    resumed = _lines(cut)
    _assert_same(resumed, expected)
    assert cut.read_bytes().startswith(b"".join(kept))  # what was there stays, only the torn line was cut


def test_sigterm_then_resume_completes_a_ray_run(
    local_ray: None, tiny_bert_dir: Path, fake: str, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(80):  # five actor calls of 16 documents
        (corpus / f"doc{i:02d}.txt").write_text(_text(i), encoding="utf-8")
    expected_run, out = tmp_path / "expected.jsonl", tmp_path / "out.jsonl"
    # A remote that holds every answer 3 s, and one actor taking one call at a time: each call's lines arrive
    # about 3 s after the previous one's, and the signal comes after the first.
    slow = f"{fake}/generic?latency_ms=3000"
    args = [a.replace(f"{fake}/generic", slow) for a in _args(tiny_bert_dir, corpus, out, fake)]
    assert main([a.replace(str(out), str(expected_run)) for a in args]) == 0
    expected = _lines(expected_run)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUNKSERVE_")}
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="csray-", dir="/tmp")
    one_actor = ["--ray", "--replicas", "1", "--replica-cpus", "0.25"]
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", *args, *one_actor], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 150
        while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
            assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before it could be interrupted"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    partial = _lines(out)  # whole lines only
    assert 0 < len(partial) < len(expected)
    assert main([*args, *RAY, "--resume"]) == 0
    resumed = _lines(out)  # no duplicates
    assert resumed.keys() == expected.keys()
    assert all(line["success"] for line in resumed.values())


def _sequence(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "the output must end on a complete line"
    return [orjson.loads(raw) for raw in data.splitlines()]


def _assert_same_line(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert {k: v for k, v in got.items() if k != "result"} == {k: v for k, v in expected.items() if k != "result"}
    if expected["target"] == "tiny-embed":  # batched differently: equal up to float rounding
        np.testing.assert_allclose(got["result"], expected["result"], atol=1e-5)
    else:
        assert got["result"] == expected["result"]


def test_ordered_and_aggregate_on_ray_write_the_very_lines_run_writes_in_its_order(
    local_ray: None, tiny_bert_dir: Path, corpus: Path, fake: str, tmp_path: Path
) -> None:
    plain, on_ray = tmp_path / "plain.jsonl", tmp_path / "ray.jsonl"
    flags = ("--ordered", "--aggregate", "mean")
    assert main(_args(tiny_bert_dir, corpus, plain, fake, *flags)) == 0
    assert main(_args(tiny_bert_dir, corpus, on_ray, fake, *flags, *RAY)) == 0
    expected, got = _sequence(plain), _sequence(on_ray)
    means = [line for line in expected if line["chunk"] is None]
    assert len(means) == 24 and {m["target"] for m in means} == {"tiny-embed"}  # the remote's echo is no vector
    assert [(g["id"], g["chunk"], g["target"]) for g in got] == [(e["id"], e["chunk"], e["target"]) for e in expected]
    for g, e in zip(got, expected, strict=True):
        _assert_same_line(g, e)


def test_aggregate_resume_on_ray_completes_the_means_from_the_lines_already_written(
    local_ray: None, tiny_bert_dir: Path, corpus: Path, fake: str, tmp_path: Path
) -> None:
    full, cut = tmp_path / "full.jsonl", tmp_path / "cut.jsonl"
    assert main(_args(tiny_bert_dir, corpus, full, fake, "--aggregate", "mean", "--ordered")) == 0
    raw = full.read_bytes().splitlines(keepends=True)
    # Cut inside a document: some of its chunk lines are there, its mean line is not.
    first_mean = next(i for i, line in enumerate(raw) if b'"chunk":null' in line)
    kept = raw[: first_mean + 2]
    assert b'"chunk":null' not in kept[-1]
    cut.write_bytes(b"".join(kept))
    assert main(_args(tiny_bert_dir, corpus, cut, fake, "--aggregate", "mean", *RAY, "--resume")) == 0
    expected = {(e["id"], e["chunk"], e["target"]): e for e in _sequence(full)}
    got = {(g["id"], g["chunk"], g["target"]): g for g in _sequence(cut)}
    assert got.keys() == expected.keys() and len(_sequence(cut)) == len(expected)  # and no duplicates
    for key, line in expected.items():
        _assert_same_line(got[key], line)


def _summary(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(path.read_bytes())
    return loaded


def test_fail_fast_on_ray_stops_at_the_first_failed_chunk_with_run_s_exit_code(
    local_ray: None, tiny_bert_dir: Path, corpus: Path, fake: str, tmp_path: Path
) -> None:
    # Every other chunk goes to a remote that answers 400 (not retried): each document has a failing chunk.
    failing = f"{fake}/generic?status=400"
    runs = {}
    for name, extra in (("plain", ()), ("ray", RAY)):
        out, report = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json"
        args = [a.replace(f"{fake}/generic", failing) for a in _args(tiny_bert_dir, corpus, out, fake, *extra)]
        code = main([*args, "--fail-fast", "--summary-json", str(report)])
        runs[name] = (code, _summary(report), _sequence(out))
    for code, summary, lines in runs.values():
        assert code == 1 and summary["interrupted"] == "fail-fast"
        assert summary["failed_chunks"] >= 1 and summary["chunks"] == len(lines)
        assert any(not line["success"] and line["target"] == failing for line in lines)
    _, summary, lines = runs["ray"]
    # On Ray the lines end at the first failure: the first document's first chunk, then its failed second one.
    assert [(line["chunk"], line["success"]) for line in lines] == [(0, True), (1, False)]
    assert summary["failed_chunks"] == 1 and summary["documents"] == 0


def test_fail_fast_on_ray_stops_at_a_bad_record_before_any_work(
    local_ray: None, tiny_bert_dir: Path, fake: str, tmp_path: Path
) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_bytes(b'{"text": "Fine. Document."}\n{"no_text": 1}\n{"text": "Another one."}\n')
    out, report = tmp_path / "out.jsonl", tmp_path / "summary.json"
    args = _args(tiny_bert_dir, docs, out, fake, "--fail-fast", "--summary-json", str(report), *RAY)
    assert main(args) == 1
    summary = _summary(report)
    assert summary["interrupted"] == "fail-fast" and summary["skipped"] == 1 and summary["documents"] == 0
    assert "skipped" in summary["errors"][0] and out.read_bytes() == b""
