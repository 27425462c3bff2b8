"""Offline runs in-process with tiny models: lines per chunk, bad records, aggregates, resume, the window."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from models.base import Encoded, Model, Task
from models.loading import LoadOptions
from service.config import Settings
from service.inference.model_entry import ModelEntry
from service.jobs.chunking import chunk_text
from service.offline import RunOptions, run, run_async
from service.runtime import default_loader

pytestmark = pytest.mark.timeout(60)

SIZE = 40


def _settings(embed: Path, clf: Path | None = None, **overrides: Any) -> Settings:
    models = [ModelEntry(id="tiny-embed", path=embed, task=Task.EMBEDDING)]
    if clf is not None:
        models.append(ModelEntry(id="tiny-clf", path=clf, task=Task.CLASSIFICATION))
    values: dict[str, Any] = {
        "models": models,
        "device": "cpu",
        "torch_threads": 1,
        "max_batch_size": 8,
        "max_wait_ms": 2,
        "max_batch_tokens": 2048,
        "batch_window": 16,
        "batch_overhead_tokens": 1_000_000,  # full batches (the tests count them), and no start-up probe calls
        **overrides,
    }
    return Settings(**values)


def _lines(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n")
    return [orjson.loads(line) for line in data.splitlines()]


def _by_key(lines: list[dict[str, Any]]) -> dict[tuple[str, int | None, str], dict[str, Any]]:
    keyed = {(line["id"], line["chunk"], line["target"]): line for line in lines}
    assert len(keyed) == len(lines), "duplicate (document, chunk, target) lines"
    return keyed


def _embed(model: Model, texts: Sequence[str]) -> list[np.ndarray]:
    return [np.asarray(v) for v in model.predict(model.encode(list(texts)))]


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    (root / "notes").mkdir(parents=True)
    (root / "a.txt").write_text("The movie was great. The food was bad. I love the service here.", encoding="utf-8")
    (root / "notes" / "b.md").write_text("# Title\n\nA short note about the dog and the cat.", encoding="utf-8")
    (root / "notes" / "broken.txt").write_bytes(b"\xff\xfe not text")
    (root / "c.jsonl").write_bytes(
        b'{"id": "j1", "text": "Hello world. This is a test of the model server."}\n'
        b'{"id": "j2", "text": \n'
        b'{"id": "j3"}\n'
        b'{"id": "j4", "text": "Fast and slow."}\n'
    )
    return root


async def test_a_mixed_directory_gives_a_line_per_chunk_and_reports_bad_records(
    mixed: Path, tmp_path: Path, tiny_bert_dir: Path, tiny_embedder: Model
) -> None:
    out = tmp_path / "out.jsonl"
    stderr = io.StringIO()
    options = RunOptions.build([mixed], out, id_field="id", chunk_size=SIZE, stderr=stderr)
    summary = await run_async(options, _settings(tiny_bert_dir))

    docs = {
        str(mixed / "a.txt"): (mixed / "a.txt").read_text(encoding="utf-8"),
        str(mixed / "notes" / "b.md"): (mixed / "notes" / "b.md").read_text(encoding="utf-8"),
        "j1": "Hello world. This is a test of the model server.",
        "j4": "Fast and slow.",
    }
    expected = {
        (doc_id, c.index, "tiny-embed"): c for doc_id, text in docs.items() for c in chunk_text(text, size=SIZE)
    }
    got = _by_key(_lines(out))
    assert set(got) == set(expected)
    for key, chunk in expected.items():
        line = got[key]
        assert (line["start"], line["end"], line["success"], line["error"]) == (chunk.start, chunk.end, True, None)
        np.testing.assert_allclose(line["result"], _embed(tiny_embedder, [chunk.text])[0], atol=1e-5)

    jsonl, broken = mixed / "c.jsonl", mixed / "notes" / "broken.txt"
    assert [e.split(": ")[0] for e in summary.errors] == [
        f"skipped {jsonl}:2",
        f"skipped {jsonl}:3",
        f"skipped {broken}:1",
    ]
    assert "no 'text' field" in summary.errors[1]
    assert all(e in stderr.getvalue() for e in summary.errors)
    assert (summary.documents, summary.chunks, summary.failed_chunks, summary.skipped) == (4, len(expected), 0, 3)
    assert summary.interrupted is None and summary.exit_code() == 1 and summary.exit_code(allow_failures=True) == 0


async def test_broadcast_with_a_mean_aggregates_only_the_embeddings(
    tmp_path: Path, tiny_bert_dir: Path, tiny_classifier_dir: Path, tiny_embedder: Model
) -> None:
    text = "The movie was great. The food was bad. I love the service here. The dog played guitar."
    src = tmp_path / "doc.txt"
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    options = RunOptions.build(
        [src], out, targets=["tiny-embed", {"model": "tiny-clf"}], assignment="broadcast", chunk_size=SIZE,
        aggregate="mean", quiet=True,
    )  # fmt: skip
    summary = await run_async(options, _settings(tiny_bert_dir, tiny_classifier_dir))
    chunks = chunk_text(text, size=SIZE)
    got = _by_key(_lines(out))
    assert set(got) == {(str(src), c.index, t) for c in chunks for t in ("tiny-embed", "tiny-clf")} | {
        (str(src), None, "tiny-embed")
    }
    assert all(got[(str(src), c.index, "tiny-clf")]["result"]["label"] in {"NEGATIVE", "POSITIVE"} for c in chunks)
    mean = got[(str(src), None, "tiny-embed")]
    assert (mean["aggregate"], mean["chunks"], mean["success"]) == ("mean", len(chunks), True)
    np.testing.assert_allclose(
        mean["result"], np.mean(_embed(tiny_embedder, [c.text for c in chunks]), axis=0), atol=1e-5
    )
    assert summary.ok and summary.lines == 2 * len(chunks) + 1


def _corpus(path: Path, n: int) -> Path:
    words = "the movie food service dog cat guitar world model server token query".split()
    rows = []
    for i in range(n):
        sentences = [" ".join(words[(i + j + k) % len(words)] for k in range(3 + j)) + "." for j in range(1 + i % 4)]
        rows.append(orjson.dumps({"id": f"d{i}", "text": " ".join(sentences)}))
    path.write_bytes(b"\n".join(rows) + b"\n")
    return path


async def test_resume_after_a_cut_gives_exactly_the_uninterrupted_lines(tmp_path: Path, tiny_bert_dir: Path) -> None:
    src = _corpus(tmp_path / "docs.jsonl", 40)
    settings = _settings(tiny_bert_dir)
    full = tmp_path / "full.jsonl"
    common: dict[str, Any] = {"id_field": "id", "chunk_size": 30, "aggregate": "mean", "quiet": True}
    await run_async(RunOptions.build([src], full, **common), settings)
    reference = _by_key(_lines(full))
    # What an interrupted run leaves: some documents whole, some partial (no mean yet), a torn last line.
    lines = full.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    kept = [line for i, line in enumerate(lines) if (i % 3 and b'"chunk":null' not in line) or i < len(lines) // 3]
    cut.write_bytes(b"".join(kept) + lines[-1][: len(lines[-1]) // 2])

    summary = await run_async(RunOptions.build([src], cut, resume=True, **common), settings)
    resumed = _by_key(_lines(cut))
    assert set(resumed) == set(reference)
    for key, line in reference.items():
        np.testing.assert_allclose(resumed[key]["result"], line["result"], atol=1e-5)
        assert {k: v for k, v in resumed[key].items() if k != "result"} == {
            k: v for k, v in line.items() if k != "result"
        }
    assert summary.already_done > 0 and summary.documents > 0 and summary.ok

    again = await run_async(RunOptions.build([src], cut, resume=True, **common), settings)
    assert (again.documents, again.chunks, again.already_done) == (0, 0, 40)
    assert _by_key(_lines(cut)).keys() == reference.keys()


async def test_an_existing_output_needs_resume_or_overwrite(tmp_path: Path, tiny_bert_dir: Path) -> None:
    src = _corpus(tmp_path / "docs.jsonl", 2)
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match=r"--resume.*--overwrite"):
        await run_async(RunOptions.build([src], out), _settings(tiny_bert_dir))
    assert out.read_text(encoding="utf-8") == "precious\n"
    summary = await run_async(RunOptions.build([src], out, overwrite=True, quiet=True), _settings(tiny_bert_dir))
    assert summary.ok and len(_lines(out)) == summary.chunks


async def test_fail_fast_stops_at_the_first_bad_record(tmp_path: Path, tiny_bert_dir: Path) -> None:
    src = _corpus(tmp_path / "docs.jsonl", 30)
    rows = src.read_bytes().splitlines(keepends=True)
    src.write_bytes(b"".join([*rows[:5], b"{oops\n", *rows[5:]]))
    out = tmp_path / "out.jsonl"
    summary = await run_async(
        RunOptions.build([src], out, id_field="id", fail_fast=True, quiet=True, stderr=io.StringIO()),
        _settings(tiny_bert_dir),
    )
    assert summary.interrupted == "fail-fast" and summary.exit_code(allow_failures=True) == 1
    assert summary.errors == [f"skipped {src}:6: " + summary.errors[0].split(": ", 1)[1]]
    assert {line["id"] for line in _lines(out)} <= {f"d{i}" for i in range(5)}


class _Recording:
    """A model that remembers the size of every batch it was given."""

    def __init__(self, model: Model, sizes: list[int]) -> None:
        self._model, self.sizes = model, sizes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def predict(self, batch: Sequence[Encoded]) -> list[Any]:
        self.sizes.append(len(batch))
        return self._model.predict(batch)


@pytest.mark.parametrize(("in_flight", "max_wait_ms", "expected"), [(None, 10_000, {8}), (3, 1, {1, 2, 3})])
async def test_many_documents_fill_the_batches_within_the_window(
    tmp_path: Path, tiny_bert_dir: Path, in_flight: int | None, max_wait_ms: int, expected: set[int]
) -> None:
    src = tmp_path / "one-chunk-each.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"text": f"the dog number {i}."}) + b"\n" for i in range(64)))
    sizes: list[int] = []

    def loader(entry: ModelEntry, options: LoadOptions) -> Model:
        return _Recording(default_loader(entry, options), sizes)  # type: ignore[return-value]

    options = RunOptions.build([src], tmp_path / "out.jsonl", max_in_flight=in_flight, quiet=True)
    summary = await run_async(options, _settings(tiny_bert_dir, max_wait_ms=max_wait_ms), loader=loader)
    assert summary.chunks == 64 and summary.ok
    assert sum(sizes) == 64 and set(sizes) <= expected and max(sizes) == max(expected), sizes


def test_stdin_and_the_plain_python_entry_point(tmp_path: Path, tiny_bert_dir: Path) -> None:
    out = tmp_path / "out.jsonl"
    stdin = io.BytesIO(b'{"text": "from a notebook."}\n{"text": "second."}\n')
    summary = run("-", str(out), settings=_settings(tiny_bert_dir), stdin=stdin, quiet=True)
    assert summary.ok and [(line["id"], line["chunk"]) for line in sorted(_lines(out), key=lambda x: x["id"])] == [
        ("<stdin>:1", 0),
        ("<stdin>:2", 0),
    ]


async def test_the_plain_entry_point_works_inside_a_running_loop(tmp_path: Path, tiny_bert_dir: Path) -> None:
    src = _corpus(tmp_path / "docs.jsonl", 3)
    summary = run(str(src), str(tmp_path / "out.jsonl"), settings=_settings(tiny_bert_dir), quiet=True)
    assert summary.documents == 3 and summary.ok


class _Poisoned:
    """A model that raises for any input of ``poison`` tokens (and so fails a batch that holds one)."""

    def __init__(self, model: Model, poison: int) -> None:
        self._model, self.poison = model, poison

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def predict(self, batch: Sequence[Encoded]) -> list[Any]:
        if any(e.length == self.poison for e in batch):
            raise RuntimeError("poisoned input")
        return self._model.predict(batch)


@pytest.mark.parametrize("fail_fast", [False, True])
async def test_a_failed_chunk_is_a_line_with_its_error(
    tmp_path: Path, tiny_bert_dir: Path, tiny_embedder: Model, fail_fast: bool
) -> None:
    poison_text = " ".join(["dog"] * 50)
    texts = ["the cat.", "the movie.", f"Good food. {poison_text}", "the world."]
    src = tmp_path / "docs.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"id": f"d{i}", "text": t}) + b"\n" for i, t in enumerate(texts)))
    poison = tiny_embedder.count_tokens([poison_text])[0]

    def loader(entry: ModelEntry, options: LoadOptions) -> Model:
        return _Poisoned(default_loader(entry, options), poison)  # type: ignore[return-value]

    options = RunOptions.build(
        [src], tmp_path / "out.jsonl", id_field="id", chunk_size=200, aggregate="mean", fail_fast=fail_fast,
        stderr=io.StringIO(),
    )  # fmt: skip
    summary = await run_async(options, _settings(tiny_bert_dir, max_wait_ms=50), loader=loader)
    lines = _by_key(_lines(tmp_path / "out.jsonl"))
    failed = lines[("d2", 1, "tiny-embed")]
    assert (failed["success"], failed["result"], failed["error"]["type"]) == (False, None, "model_error")
    assert "poisoned input" in failed["error"]["message"]
    assert summary.failed_chunks == 1 and summary.exit_code() == 1
    if fail_fast:
        assert summary.interrupted == "fail-fast" and summary.exit_code(allow_failures=True) == 1
    else:
        assert summary.interrupted is None and summary.exit_code(allow_failures=True) == 0
        assert lines[("d0", 0, "tiny-embed")]["success"] and lines[("d2", 0, "tiny-embed")]["success"]
        mean = lines[("d2", None, "tiny-embed")]
        assert (mean["success"], mean["chunks"], mean["error"]["type"]) == (False, 1, "incomplete")
        np.testing.assert_allclose(mean["result"], lines[("d2", 0, "tiny-embed")]["result"], atol=1e-6)
