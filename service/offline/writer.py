"""The JSONL output: lines appended whole and flushed often, and the index of what a file already holds (resume).

A chunk line is ``{"id", "chunk", "start", "end", "target", "success", "result", "error"}``; a per-document
aggregate line has ``"chunk": null`` and adds ``"aggregate"`` and ``"chunks"`` (how many chunk results it
averages). Keys are written in that order, which ``load_index`` relies on to read only the head of a line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

_SUCCESS_KEY = b',"success":'


@dataclass
class MeanAccumulator:
    """Running sum of one document's embeddings at one target; ``usable`` drops when a result is not a vector."""

    total: np.ndarray | None = None
    count: int = 0
    failed: int = 0
    usable: bool = True

    def add(self, value: Any) -> None:
        """Add one successful result (ignored, and the mean given up, when it is not a flat vector of numbers)."""
        vector = as_vector(value)
        if vector is None or (self.total is not None and self.total.shape != vector.shape):
            self.usable = False
            return
        self.total = vector if self.total is None else self.total + vector
        self.count += 1

    def mean(self) -> list[float] | None:
        if not self.usable or self.total is None:
            return None
        result: list[float] = (self.total / self.count).tolist()
        return result


def as_vector(value: Any) -> np.ndarray | None:
    """``value`` as a 1-d float array when it is a non-empty list of numbers, else None."""
    if not isinstance(value, list) or not value or isinstance(value[0], bool) or not isinstance(value[0], int | float):
        return None
    try:
        vector = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return vector if vector.ndim == 1 else None


@dataclass
class OutputIndex:
    """What an existing output file holds: chunk results by document, aggregates, and partial means."""

    chunks: dict[str, set[tuple[int, str]]] = field(default_factory=dict)
    aggregated: set[tuple[str, str]] = field(default_factory=set)
    partial: dict[tuple[str, str], MeanAccumulator] = field(default_factory=dict)
    lines: int = 0
    unreadable: int = 0

    def has(self, doc_id: str, chunk: int, target: str) -> bool:
        done = self.chunks.get(doc_id)
        return done is not None and (chunk, target) in done


def chunk_line(
    doc_id: str, start: int, end: int, index: int, target: str, success: bool, result: Any, error: Any
) -> bytes:
    """One chunk result as a JSONL line."""
    return orjson.dumps(
        {
            "id": doc_id,
            "chunk": index,
            "start": start,
            "end": end,
            "target": target,
            "success": success,
            "result": result,
            "error": error,
        },
        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE,
    )


def aggregate_line(doc_id: str, target: str, acc: MeanAccumulator) -> bytes | None:
    """The mean line of one document at one target; None when its results are not vectors."""
    mean = acc.mean()
    if mean is None:
        return None
    error = None
    if acc.failed:
        error = {"type": "incomplete", "message": f"{acc.failed} of {acc.failed + acc.count} chunks failed"}
    return orjson.dumps(
        {
            "id": doc_id,
            "chunk": None,
            "target": target,
            "success": not acc.failed,
            "result": mean,
            "error": error,
            "aggregate": "mean",
            "chunks": acc.count,
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )


def trim_partial_line(path: Path) -> int:
    """Cut a trailing incomplete line (left by a hard kill) so appending starts on a line boundary; bytes cut."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("r+b") as fh:
        pos = size
        while pos > 0:
            step = min(pos, 1 << 16)
            fh.seek(pos - step)
            block = fh.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                keep = pos - step + cut + 1
                break
            pos -= step
        else:
            keep = 0
        if keep != size:
            fh.truncate(keep)
    return size - keep


def load_index(path: Path, *, with_means: bool) -> OutputIndex:
    """Read what ``path`` already holds; ``with_means`` also sums the vectors of documents not yet aggregated."""
    index = OutputIndex()
    targets: dict[str, str] = {}  # one string object per target name, however many lines name it
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                record = _parse(raw, full=with_means)
                doc_id, chunk, target = str(record["id"]), record["chunk"], str(record["target"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                index.unreadable += 1
                continue
            index.lines += 1
            target = targets.setdefault(target, target)
            if chunk is None:
                index.aggregated.add((doc_id, target))
                index.partial.pop((doc_id, target), None)
                continue
            index.chunks.setdefault(doc_id, set()).add((int(chunk), target))
            if with_means:
                acc = index.partial.setdefault((doc_id, target), MeanAccumulator())
                if record.get("success"):
                    acc.add(record.get("result"))
                else:
                    acc.failed += 1
    # Documents aggregated before their chunks were all read back are complete already.
    for key in index.aggregated:
        index.partial.pop(key, None)
    return index


def _parse(raw: bytes, *, full: bool) -> dict[str, Any]:
    if not full:
        cut = raw.find(_SUCCESS_KEY)
        if cut > 0:
            raw = raw[:cut] + b"}"
    record = orjson.loads(raw)
    if not isinstance(record, dict):
        raise TypeError("not an object")
    return record


class ResultWriter:
    """Appends whole lines to the output; each ``flush`` is one ``write`` of the lines gathered since the last."""

    def __init__(self, path: Path, *, append: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        self.path = path
        self._fd = os.open(path, flags, 0o644)
        self._pending: list[bytes] = []
        self.lines = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, line: bytes) -> None:
        """Queue one line (ending in a newline) for the next flush."""
        self._pending.append(line)

    def flush(self) -> None:
        """Write every queued line at once."""
        if not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        count = len(self._pending)
        self._pending.clear()
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        self.lines += count

    def close(self) -> None:
        """Flush and close; idempotent."""
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1
