"""Offline output: whole lines, a trailing partial line cut before resuming, and the index of what is done."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from service.offline.options import Summary
from service.offline.progress import BarProgress, QuietProgress, make_progress
from service.offline.writer import (
    MeanAccumulator,
    ResultWriter,
    aggregate_line,
    chunk_line,
    load_index,
    trim_partial_line,
)


def test_lines_are_written_only_on_flush_and_end_with_newlines(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    writer = ResultWriter(out, append=False)
    writer.add(chunk_line("d", 0, 5, 0, "m", True, [1.0, 2.0], None))
    assert out.read_bytes() == b""
    writer.flush()
    writer.add(chunk_line("d", 5, 9, 1, "m", False, None, {"type": "timeout", "message": "late"}))
    writer.close()
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert lines == [
        {
            "id": "d",
            "chunk": 0,
            "start": 0,
            "end": 5,
            "target": "m",
            "success": True,
            "result": [1.0, 2.0],
            "error": None,
        },
        {
            "id": "d",
            "chunk": 1,
            "start": 5,
            "end": 9,
            "target": "m",
            "success": False,
            "result": None,
            "error": {"type": "timeout", "message": "late"},
        },
    ]
    assert writer.lines == 2


def test_append_keeps_what_is_there(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"old": 1}\n')
    writer = ResultWriter(out, append=True)
    writer.add(b'{"new": 2}\n')
    writer.close()
    assert out.read_bytes() == b'{"old": 1}\n{"new": 2}\n'


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        (b"", b""),
        (b'{"a": 1}\n', b'{"a": 1}\n'),
        (b'{"a": 1}\n{"b": ', b'{"a": 1}\n'),
        (b'{"no newline at all', b""),
        (b"x" * 70_000 + b"\n" + b"y" * 70_000, b"x" * 70_000 + b"\n"),
    ],
)
def test_a_trailing_partial_line_is_cut(tmp_path: Path, content: bytes, kept: bytes) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(content)
    assert trim_partial_line(out) == len(content) - len(kept)
    assert out.read_bytes() == kept


def test_the_index_knows_done_chunks_aggregates_and_partial_means(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    done = MeanAccumulator()
    done.add([1.0, 1.0])
    line = aggregate_line("a", "m", done)
    assert line is not None
    out.write_bytes(
        chunk_line("a", 0, 3, 0, "m", True, [1.0, 1.0], None)
        + line
        + chunk_line("b", 0, 3, 0, "m", True, [1.0, 3.0], None)
        + chunk_line("b", 3, 6, 1, "m", False, None, {"type": "x", "message": "y"})
        + chunk_line("b", 6, 9, 2, "m", True, [3.0, 5.0], None)
        + b"not json\n"
    )
    index = load_index(out, with_means=True)
    assert index.has("a", 0, "m") and index.has("b", 1, "m") and not index.has("b", 3, "m")
    assert index.aggregated == {("a", "m")}
    assert list(index.partial) == [("b", "m")]
    partial = index.partial[("b", "m")]
    assert partial.mean() == [2.0, 4.0] and partial.count == 2 and partial.failed == 1
    assert (index.lines, index.unreadable) == (5, 1)
    assert load_index(out, with_means=False).partial == {}


def test_an_aggregate_over_failed_chunks_says_so() -> None:
    acc = MeanAccumulator()
    acc.add([2.0, 0.0])
    acc.add([0.0, 2.0])
    acc.failed = 1
    line = aggregate_line("d", "m", acc)
    assert line is not None
    assert orjson.loads(line) == {
        "id": "d",
        "chunk": None,
        "target": "m",
        "success": False,
        "result": [1.0, 1.0],
        "error": {"type": "incomplete", "message": "1 of 3 chunks failed"},
        "aggregate": "mean",
        "chunks": 2,
    }


@pytest.mark.parametrize("value", [{"label": "POSITIVE"}, "text", [], [[1.0]], [True]])
def test_results_that_are_not_vectors_get_no_mean(value: object) -> None:
    acc = MeanAccumulator()
    acc.add(value)
    assert aggregate_line("d", "m", acc) is None


def test_vectors_of_different_lengths_get_no_mean() -> None:
    acc = MeanAccumulator()
    acc.add([1.0, 2.0])
    acc.add([1.0])
    assert acc.mean() is None


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_only_on_a_terminal_and_not_when_quiet() -> None:
    counted: list[bool] = []

    def count() -> int:
        counted.append(True)
        return 10

    pipe = io.StringIO()
    assert isinstance(make_progress(count, quiet=False, stream=pipe), QuietProgress)
    assert isinstance(make_progress(count, quiet=True, stream=_Terminal()), QuietProgress)
    assert not counted  # no pre-scan of the inputs when no bar is shown
    terminal = _Terminal()
    bar = make_progress(count, quiet=False, stream=terminal)
    assert isinstance(bar, BarProgress)
    bar.advance(0, 3)
    bar.advance(1, 0)
    bar.close()
    assert "1/10" in terminal.getvalue() and "3 chunks" in terminal.getvalue()


@pytest.mark.parametrize(
    ("summary", "allow", "code"),
    [
        (Summary(documents=2, chunks=4), False, 0),
        (Summary(documents=2, chunks=4, failed_chunks=1), False, 1),
        (Summary(documents=2, chunks=4, failed_chunks=1), True, 0),
        (Summary(documents=2, skipped=1), False, 1),
        (Summary(interrupted="SIGINT"), True, 130),
        (Summary(interrupted="SIGTERM"), False, 143),
        (Summary(interrupted="fail-fast"), True, 1),
    ],
)
def test_exit_codes(summary: Summary, allow: bool, code: int) -> None:
    assert summary.exit_code(allow) == code
