"""``chunkserve run --ordered``: lines in document and chunk order, the same lines as completion order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from models.base import Task
from service.cli import build_parser
from service.config import Settings
from service.inference.model_entry import ModelEntry
from service.offline import RunOptions, run_async
from service.offline.ordering import Reorder

pytestmark = pytest.mark.timeout(60)


def test_reorder_releases_in_numbered_order_and_flushes_the_rest() -> None:
    order = Reorder()
    seqs = [order.number() for _ in range(5)]
    out: list[int] = []
    for seq in (3, 1, 0, 4):
        order.arrive(seqs[seq], lambda seq=seq: out.append(seq))  # type: ignore[misc]
    assert out == [0, 1] and order.held == 2  # 3 and 4 wait for 2
    order.flush()
    assert out == [0, 1, 3, 4] and order.held == 0


def _settings(embed: Path) -> Settings:
    return Settings(
        models=[ModelEntry(id="tiny-embed", path=embed, task=Task.EMBEDDING)],
        device="cpu",
        torch_threads=1,
        max_batch_size=4,
        max_wait_ms=5,
        max_batch_tokens=2048,
        batch_window=8,
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("in_flight", [None, 3])
async def test_ordered_output_follows_documents_then_chunks(
    tmp_path: Path, tiny_bert_dir: Path, in_flight: int | None
) -> None:
    # Long and short documents alternate, so the batcher's length sorting finishes them out of order.
    docs = [" ".join(["the dog is happy."] * (12 if i % 2 == 0 else 1)) for i in range(12)]
    src = tmp_path / "docs.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"id": f"d{i:02d}", "text": t}) + b"\n" for i, t in enumerate(docs)))
    settings = _settings(tiny_bert_dir)
    ordered_out, free_out = tmp_path / "ordered.jsonl", tmp_path / "free.jsonl"
    common: dict[str, Any] = {"id_field": "id", "chunk_size": 40, "aggregate": "mean", "quiet": True}
    ordered = await run_async(
        RunOptions.build([src], ordered_out, ordered=True, max_in_flight=in_flight, **common), settings
    )
    free = await run_async(RunOptions.build([src], free_out, max_in_flight=in_flight, **common), settings)
    assert ordered.ok and free.ok and ordered.chunks == free.chunks > len(docs)
    lines = _lines(ordered_out)
    keys = [(line["id"], line["chunk"] if line["chunk"] is not None else 10**6) for line in lines]
    assert keys == sorted(keys)  # document order, chunk order, each document's mean after its chunks
    assert sorted(lines, key=lambda x: orjson.dumps(x)) == sorted(_lines(free_out), key=lambda x: orjson.dumps(x))


def test_the_flag_reaches_the_options() -> None:
    args = build_parser().parse_args(["run", "docs", "-o", "out.jsonl", "--ordered"])
    assert args.ordered is True
    assert build_parser().parse_args(["run", "docs", "-o", "out.jsonl"]).ordered is False
