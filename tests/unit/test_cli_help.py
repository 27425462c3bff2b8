"""The command line a new user meets: --version, readable help with defaults, usage errors before torch loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("clean_env")  # tests/unit/conftest.py


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc_info:
        build_parser().parse_args([*argv, "--help"])
    assert exc_info.value.code == 0
    return capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["--version"])
    assert exc_info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("chunkserve ") and out != "chunkserve "


def test_top_level_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help([], capsys)
    assert "``" not in text
    assert "--version" in text and "serve" in text and "run" in text


def test_serve_help_shows_real_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(_help(["serve"], capsys).split())  # argparse wraps lines
    assert "PydanticUndefined" not in text
    assert "CHUNKSERVE_CORS_METHODS; default: GET,POST]" in text
    assert "CHUNKSERVE_CORS_HEADERS; default: Authorization,Content-Type,X-Request-ID]" in text
    assert "CHUNKSERVE_CORS_ORIGINS; default: empty]" in text
    assert "CHUNKSERVE_REMOTE_ALLOWLIST; default: empty]" in text
    assert "CHUNKSERVE_TRUNCATE; default: true]" in text


def test_run_help_speaks_of_a_run_and_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(_help(["run"], capsys).split())
    assert "Models to serve" not in text and "413" not in text
    assert "Models to load" in text
    for fragment in ("(default: sentences)", "(default: 500)", "(default: round_robin)", "--ordered"):
        assert fragment in text, fragment


def test_bench_help_has_a_description_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(_help(["bench"], capsys).split())
    assert "Measure chunkserve" in text
    assert "(default: 300)" in text and "(default: 1,8,32,64)" in text and "(default: embeddings)" in text


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--concurrency", "0"], "must be >= 1"),
        (["--concurrency", "1,0"], "must be >= 1"),
        (["--concurrency", ","], "got nothing"),
        (["--requests", "0"], "must be >= 1"),
        (["--requests", "-5"], "must be >= 1"),
        (["--duration", "0"], "must be > 0"),
        (["--duration", "nan"], "must be > 0"),
    ],
)
def test_bench_refuses_values_that_cannot_measure(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc_info:
        build_parser().parse_args(["bench", *argv])
    assert exc_info.value.code == 2
    assert fragment in capsys.readouterr().err


_PROBE = """
import json, sys
from service.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    if isinstance(exc.code, str):
        print(exc.code, file=sys.stderr)
    code = exc.code if isinstance(exc.code, int) else 1
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


def _usage_error(argv: list[str], cwd: Path) -> tuple[dict[str, object], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUNKSERVE_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_usage_errors_are_answered_before_torch_is_imported(tmp_path: Path) -> None:
    # Importing torch is what took ~10 s; a usage error must be found before it.
    (tmp_path / "doc.txt").write_text("text", encoding="utf-8")
    (tmp_path / "out.jsonl").write_text("earlier\n", encoding="utf-8")
    cases = [
        (["run", "missing.txt", "-o", "new.jsonl"], "does not exist"),
        (["run", "doc.txt", "-o", "out.jsonl"], "--resume"),
        (["run", "doc.txt", "-o", "new.jsonl", "--model", f"m={tmp_path / 'nowhere'}"], "is not a directory"),
        (["run", "doc.txt", "-o", "new.jsonl", "--timeout-s", "600"], "--timeout-s must be in"),
        (["serve", "--host", "0.0.0.0"], "without authentication"),
        (["serve", "--model", f"m={tmp_path / 'nowhere'}"], "is not a directory"),
    ]
    for argv, fragment in cases:
        result, err = _usage_error(argv, tmp_path)
        assert result["code"] in (1, 2), (argv, result)
        assert fragment in err, (argv, err)
        assert result["heavy"] == [], (argv, result)
