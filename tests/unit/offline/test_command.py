"""`chunkserve run` flags: settings flags minus the server-only ones, and usage errors caught before any work."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from service.cli import build_parser, main, settings_from_args
from service.offline.command import _target, limit_heap_growth

pytestmark = pytest.mark.usefixtures("clean_env")  # tests/unit/conftest.py


def test_run_takes_model_and_batching_flags_into_settings() -> None:
    args = build_parser().parse_args(
        ["run", "docs", "-o", "out.jsonl", "--model", "e=/m/e:embedding", "--max-batch-size", "8", "--resume"]
    )
    settings = settings_from_args(args)
    assert [m.id for m in settings.models] == ["e"] and settings.max_batch_size == 8
    assert args.resume and args.inputs == ["docs"] and args.output == Path("out.jsonl")


@pytest.mark.parametrize("flag", ["--host", "--port", "--cors-origins", "--max-queue"])
def test_run_has_no_server_only_flags(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "docs", "-o", "out.jsonl", flag, "1"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_targets_are_ids_urls_or_json_objects() -> None:
    assert _target("tiny") == "tiny"
    assert _target('{"url": "https://x.example/v1", "protocol": "openai-embeddings"}') == {
        "url": "https://x.example/v1",
        "protocol": "openai-embeddings",
    }


def test_a_missing_input_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nowhere.txt"), "-o", str(tmp_path / "out.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_existing_output_is_kept_without_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "doc.txt").write_text("text", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("earlier results\n", encoding="utf-8")
    assert main(["run", str(tmp_path / "doc.txt"), "-o", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err and out.read_text(encoding="utf-8") == "earlier results\n"


def test_overlap_must_be_smaller_than_the_chunk_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "doc.txt").write_text("text", encoding="utf-8")
    assert main(["run", str(tmp_path / "doc.txt"), "-o", "o.jsonl", "--chunk-size", "10", "--overlap", "10"]) == 2
    assert "overlap must be" in capsys.readouterr().err


def test_heap_growth_is_limited_where_the_c_library_is_glibc() -> None:
    assert limit_heap_growth() is (platform.libc_ver()[0] == "glibc")
