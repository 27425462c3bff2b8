"""`chunkserve run` with a generation target: each chunk summarised locally, no network at all."""

from __future__ import annotations

from pathlib import Path

import orjson

from models.generation import GenerationModel, reference_generate
from models.loading import LoadOptions, load_local
from service.config import Settings
from service.inference.model_entry import ModelEntry
from service.offline import RunOptions, run_async


async def test_run_summarises_each_chunk_of_each_file(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The quick brown fox jumps. It runs over the lazy dog!", encoding="utf-8")
    (docs / "b.md").write_text("Cats and dogs live together. The house is quiet at night.", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    target = {"model": "gpt", "prompt": "Summarise: {text}", "max_tokens": 6}
    settings = Settings(models=[ModelEntry(id="gpt", path=tiny_gpt2_dir)], device="cpu", torch_threads=1)
    options = RunOptions.build([docs], out, chunk_size=30, targets=[target], quiet=True)
    summary = await run_async(options, settings)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert summary.exit_code() == 0 and summary.failed_chunks == 0 and len(lines) >= 4
    reference = load_local("ref", tiny_gpt2_dir, options=LoadOptions(device="cpu"))
    assert isinstance(reference, GenerationModel)
    texts = {p.name: p.read_text(encoding="utf-8") for p in docs.iterdir()}
    for line in lines:
        assert line["success"] and line["target"] == "gpt"
        chunk = texts[Path(line["id"]).name][line["start"] : line["end"]]
        ids = reference_generate(reference, reference.encode_prompt(f"Summarise: {chunk}"), 6)
        assert line["result"]["text"] == reference.decode([i for i in ids if i not in reference.eos_ids])


async def test_run_keeps_two_prompts_on_one_model_apart(tmp_path: Path, tiny_gpt2_dir: Path) -> None:
    (tmp_path / "a.txt").write_text("The quick brown fox jumps. It runs over the lazy dog!", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    prompts = ["Summarise: {text}", "Translate: {text}"]
    targets = [{"model": "gpt", "prompt": p, "max_tokens": 4} for p in prompts]
    settings = Settings(models=[ModelEntry(id="gpt", path=tiny_gpt2_dir)], device="cpu", torch_threads=1)
    options = RunOptions.build(
        [tmp_path / "a.txt"], out, chunk_size=30, targets=targets, assignment="broadcast", quiet=True
    )
    summary = await run_async(options, settings)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert summary.exit_code() == 0 and summary.failed_chunks == 0
    chunks = sorted({(line["start"], line["end"]) for line in lines})
    assert sorted((line["start"], line["target"]) for line in lines) == sorted(
        (start, label) for start, _ in chunks for label in ("gpt", "gpt#2")
    )
    reference = load_local("ref", tiny_gpt2_dir, options=LoadOptions(device="cpu"))
    assert isinstance(reference, GenerationModel)
    text = (tmp_path / "a.txt").read_text(encoding="utf-8")
    for line in lines:
        prompt = prompts[line["target"] == "gpt#2"].replace("{text}", text[line["start"] : line["end"]])
        ids = reference_generate(reference, reference.encode_prompt(prompt), 4)
        assert line["result"]["text"] == reference.decode([i for i in ids if i not in reference.eos_ids])
