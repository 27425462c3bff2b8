"""Inputs → documents: .txt/.md files (one document each), directories of them, JSONL files and JSONL on stdin.

Everything is read lazily, one document at a time, so a corpus never has to fit in memory. A record that
cannot become a document (invalid JSON, a missing field, bytes that are not UTF-8) is yielded as a ``BadRecord``
naming its file and line, and reading goes on.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

STDIN = "-"
TEXT_SUFFIXES = frozenset({".txt", ".md"})
JSONL_SUFFIXES = frozenset({".jsonl"})


@dataclass(frozen=True, slots=True)
class Document:
    """One text to chunk; ``source`` and ``line`` say where it came from (``line`` is None for a whole file)."""

    id: str
    text: str
    source: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class BadRecord:
    """An input record that was skipped, and why."""

    source: str
    line: int | None
    reason: str

    def where(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"


Record = Document | BadRecord


def check_inputs(inputs: Sequence[str | Path]) -> None:
    """Refuse inputs that can never be read, before any model is loaded.

    Raises:
        ValueError: no inputs, a path that does not exist, a file of an unsupported kind, or ``-`` twice.
    """
    if not inputs:
        raise ValueError("give at least one input: a .txt/.md/.jsonl file, a directory, or - for JSONL on stdin")
    if sum(str(i) == STDIN for i in inputs) > 1:
        raise ValueError("stdin (-) can be read only once")
    for item in inputs:
        if str(item) == STDIN:
            continue
        path = Path(item)
        if not path.exists():
            raise ValueError(f"input {str(item)!r} does not exist")
        if path.is_file() and path.suffix.lower() not in TEXT_SUFFIXES | JSONL_SUFFIXES:
            raise ValueError(f"input {str(item)!r} is not a .txt, .md or .jsonl file (nor a directory)")


def expand(inputs: Sequence[str | Path], exclude: Path | None = None) -> Iterator[str | Path]:
    """Each input in order; a directory becomes its .txt/.md/.jsonl files, recursively, sorted by path.

    Hidden files and directories are skipped, and so is ``exclude`` (the output file, which may live in an input
    directory).
    """
    skip = exclude.resolve() if exclude is not None else None
    for item in inputs:
        if str(item) == STDIN:
            yield STDIN
            continue
        path = Path(item)
        if not path.is_dir():
            yield path
            continue
        found = []
        for root, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                candidate = Path(root, name)
                if name.startswith(".") or candidate.suffix.lower() not in TEXT_SUFFIXES | JSONL_SUFFIXES:
                    continue
                if skip is not None and candidate.resolve() == skip:
                    continue
                found.append(candidate)
        yield from sorted(found, key=lambda p: p.relative_to(path).parts)


def read_documents(
    inputs: Sequence[str | Path],
    *,
    text_field: str = "text",
    id_field: str | None = None,
    stdin: BinaryIO | None = None,
    exclude: Path | None = None,
) -> Iterator[Record]:
    """Every document of ``inputs`` in order, with a ``BadRecord`` in place of each record that cannot be read."""
    for item in expand(inputs, exclude):
        if item == STDIN:
            if stdin is None:
                raise ValueError("stdin (-) was given as an input but no stdin stream was passed")
            yield from _jsonl(split_lines(stdin), "<stdin>", text_field, id_field)
            continue
        path = Path(item)
        try:
            if path.suffix.lower() in JSONL_SUFFIXES:
                with path.open("rb") as fh:
                    yield from _jsonl(fh, str(path), text_field, id_field)
            else:
                yield _text_file(path)
        except OSError as exc:
            yield BadRecord(str(path), None, f"cannot read: {exc.strerror or exc}")


def count_documents(inputs: Sequence[str | Path], exclude: Path | None = None) -> int | None:
    """How many documents ``inputs`` hold at most (non-blank JSONL lines count one each); None with stdin."""
    total = 0
    for item in expand(inputs, exclude):
        if item == STDIN:
            return None
        path = Path(item)
        if path.suffix.lower() not in JSONL_SUFFIXES:
            total += 1
            continue
        try:
            with path.open("rb") as fh:
                total += sum(1 for line in fh if line.strip())
        except OSError:
            continue
    return total


def split_lines(stream: BinaryIO | io.RawIOBase, size: int = 1 << 16) -> Iterator[bytes]:
    """The lines of ``stream``, each as soon as it has arrived (one ``read1``/raw ``read`` at a time)."""
    read = getattr(stream, "read1", stream.read)
    parts: list[bytes] = []
    while chunk := read(size):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            parts.append(chunk[start : end + 1])
            yield b"".join(parts)
            parts.clear()
            start = end + 1
        if start < len(chunk):
            parts.append(chunk[start:])
    if parts:
        yield b"".join(parts)


def _text_file(path: Path) -> Record:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return BadRecord(str(path), line, f"undecodable bytes: not UTF-8 at byte {exc.start}")
    return Document(id=str(path), text=text, source=str(path))


def _jsonl(lines: Iterable[bytes], source: str, text_field: str, id_field: str | None) -> Iterator[Record]:
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield BadRecord(source, number, f"undecodable bytes: not UTF-8 at column {exc.start + 1}")
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield BadRecord(source, number, f"invalid JSON: {exc}")
            continue
        yield _from_record(record, source, number, text_field, id_field)


def _from_record(record: object, source: str, line: int, text_field: str, id_field: str | None) -> Record:
    if not isinstance(record, dict):
        return BadRecord(source, line, f"expected a JSON object, got {type(record).__name__}")
    text = record.get(text_field)
    if text is None:
        return BadRecord(source, line, f"no {text_field!r} field (choose the field with --text-field)")
    if not isinstance(text, str):
        return BadRecord(source, line, f"field {text_field!r} is a {type(text).__name__}, not a string")
    if id_field is None:
        return Document(id=f"{source}:{line}", text=text, source=source, line=line)
    doc_id = record.get(id_field)
    if doc_id is None:
        return BadRecord(source, line, f"no {id_field!r} field (the --id-field)")
    if not isinstance(doc_id, str | int) or isinstance(doc_id, bool):
        return BadRecord(source, line, f"id field {id_field!r} is a {type(doc_id).__name__}; use a string or number")
    return Document(id=str(doc_id), text=text, source=source, line=line)
