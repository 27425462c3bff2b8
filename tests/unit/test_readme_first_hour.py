"""What the README tells a new user holds: extras exist, stated defaults are the code's, the Quick start can run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from service.cli import build_parser
from service.schemas import ProcessRequest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_every_extra_the_readme_installs_exists() -> None:
    extras = set(re.findall(r'-e "\.\[([a-z]+)\]"', README))
    assert {"dev", "clients"} <= extras
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"])
    assert any(d.startswith("openai") for d in PYPROJECT["project"]["optional-dependencies"]["clients"])


def test_the_quick_start_runs_top_to_bottom() -> None:
    quick = _section("Quick start")
    assert "second terminal" in quick and "/docs" in quick
    [block] = re.findall(r"```bash\n(.*?)```", quick, flags=re.S)[:1]
    # A foreground `chunkserve serve` would block every line after it.
    assert not any(line.strip().startswith("chunkserve serve") for line in block.splitlines())
    assert block.lstrip().startswith("until curl -sf http://127.0.0.1:8000/ready")


def test_the_cpu_wheel_index_is_given() -> None:
    assert "--index-url https://download.pytorch.org/whl/cpu" in README
    assert "Python ≥ 3.11" in README and "python3-venv" in README


def test_the_stated_chunk_size_default_is_the_codes() -> None:
    default = ProcessRequest.model_fields["chunk_size"].default
    assert f"`chunk_size` (default {default})" in _section("Long texts: chunk, fan out, stream")
    assert build_parser().parse_args(["run", "docs", "-o", "out.jsonl"]).chunk_size == default


def test_the_long_text_example_says_where_remote_keys_go() -> None:
    assert "CHUNKSERVE_REMOTE_API_KEYS=api.openai.com=" in _section("Long texts: chunk, fan out, stream")
