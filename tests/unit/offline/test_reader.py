"""Offline inputs: files, directories and JSONL become documents; bad records are reported by file and line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from service.offline.reader import BadRecord, Document, check_inputs, count_documents, read_documents, split_lines


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "b.txt").write_text("Second file.", encoding="utf-8")
    (root / "a.md").write_text("# First\n\nMarkdown.", encoding="utf-8")
    (root / "sub" / "c.txt").write_bytes(b"caf\xe9\nnot utf-8")
    (root / "sub" / "d.jsonl").write_bytes(
        b'{"text": "one", "id": "x1"}\n'
        b"{not json\n"
        b"\n"
        b'{"id": "x4"}\n'
        b'{"text": 5, "id": "x5"}\n'
        b'{"text": "\xff\xfe", "id": "x6"}\n'
        b'["a list"]\n'
        b'{"text": "seven", "id": 7}\n'
    )
    (root / "notes.csv").write_text("ignored", encoding="utf-8")
    (root / ".hidden" / "e.txt").write_text("ignored", encoding="utf-8")
    return root


def test_a_directory_is_read_recursively_in_path_order_with_bad_records_in_place(corpus: Path) -> None:
    records = list(read_documents([corpus], id_field="id"))
    jsonl = str(corpus / "sub" / "d.jsonl")
    assert records == [
        Document(str(corpus / "a.md"), "# First\n\nMarkdown.", str(corpus / "a.md")),
        Document(str(corpus / "b.txt"), "Second file.", str(corpus / "b.txt")),
        BadRecord(str(corpus / "sub" / "c.txt"), 1, "undecodable bytes: not UTF-8 at byte 3"),
        Document("x1", "one", jsonl, 1),
        BadRecord(jsonl, 2, records[4].reason),  # type: ignore[union-attr]
        BadRecord(jsonl, 4, "no 'text' field (choose the field with --text-field)"),
        BadRecord(jsonl, 5, "field 'text' is a int, not a string"),
        BadRecord(jsonl, 6, "undecodable bytes: not UTF-8 at column 11"),
        BadRecord(jsonl, 7, "expected a JSON object, got list"),
        Document("7", "seven", jsonl, 8),
    ]
    assert records[4].reason.startswith("invalid JSON")  # type: ignore[union-attr]


def test_jsonl_ids_default_to_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"body": "a"}\n\n{"body": "b"}\n', encoding="utf-8")
    docs = list(read_documents([path], text_field="body"))
    assert [(d.id, d.text) for d in docs] == [(f"{path}:1", "a"), (f"{path}:3", "b")]  # type: ignore[union-attr]


def test_a_missing_id_field_is_a_bad_record(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "a"}\n', encoding="utf-8")
    assert list(read_documents([path], id_field="key")) == [BadRecord(str(path), 1, "no 'key' field (the --id-field)")]


def test_stdin_is_jsonl() -> None:
    stdin = io.BytesIO(b'{"text": "from a pipe"}\n')
    assert list(read_documents(["-"], stdin=stdin)) == [Document("<stdin>:1", "from a pipe", "<stdin>", 1)]


def test_the_output_file_is_not_read_as_input(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text('{"text": "a result line"}\n', encoding="utf-8")
    docs = list(read_documents([tmp_path], exclude=out))
    assert [d.source for d in docs] == [str(tmp_path / "in.jsonl")]  # type: ignore[union-attr]
    assert count_documents([tmp_path], exclude=out) == 1


def test_count_documents_counts_files_and_jsonl_lines(corpus: Path) -> None:
    assert count_documents([corpus]) == 3 + 7
    assert count_documents([corpus, "-"]) is None


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "at least one input"),
        (["/nowhere/x.txt"], "does not exist"),
        (["-", "-"], "only once"),
    ],
)
def test_unusable_inputs_are_refused_before_any_work(inputs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_inputs(inputs)


def test_a_file_of_another_kind_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("a,b", encoding="utf-8")
    with pytest.raises(ValueError, match=r"table\.csv.*not a \.txt, \.md or \.jsonl"):
        check_inputs([path])


class _Trickle(io.RawIOBase):
    """A pipe that hands out a few bytes per read, as a slow producer would."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk, self.data = self.data[: min(size, self.step)], self.data[min(size, self.step) :]
        return chunk


@pytest.mark.parametrize("step", [1, 3, 64])
def test_stdin_lines_are_split_across_reads(step: int) -> None:
    data = b'{"text": "a"}\n\n{"text": "bb"}\n{"text": "no newline"}'
    assert list(split_lines(_Trickle(data, step), size=16)) == [
        b'{"text": "a"}\n',
        b"\n",
        b'{"text": "bb"}\n',
        b'{"text": "no newline"}',
    ]
