"""House rules that are not import directions (those are import-linter contracts, see test_contracts.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p for pkg in ("service", "models") for p in (ROOT / pkg).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_modules_were_found() -> None:
    assert len(MODULES) > 10


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_nothing_but_config_reads_the_environment(path: Path) -> None:
    rel = _rel(path)
    if rel in {"service/config.py", "service/cli.py"} or rel.startswith("service/bench/"):
        return
    source = path.read_text(encoding="utf-8")
    assert "os.environ" not in source and "getenv" not in source, f"{rel} reads the environment"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_module_level_app_or_settings(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            assert name not in {"FastAPI", "Settings", "create_app", "load_model"}, f"{_rel(path)}: module-level {name}"


def test_the_command_line_does_not_import_torch_until_a_model_loads() -> None:
    # `chunkserve --help`, `token`, `probe` and the settings checks must answer in a blink, not after torch loads.
    import subprocess
    import sys

    heavy = "{'torch', 'transformers'}"
    code = f"import sys, service.cli; service.cli.build_parser(); print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_production_code_uses_no_assert(path: Path) -> None:
    # `python -O` strips assert statements: a check that guards behaviour must be an `if ... raise`.
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    assert not lines, f"{_rel(path)} uses assert at line(s) {lines}"


def test_nothing_points_outside_the_repository() -> None:
    # A user who clones the repository has only what is in it: no notes kept beside it.
    outside = ("ARCHITECTURE.md", "PERF-NOTES", "STYLE.md", "INSTALL-NOTES", "/work/shared", "../shared")
    files = [*MODULES, *(ROOT / "tests").rglob("*.py"), ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    files = [f for f in files if f != Path(__file__).resolve()]
    hits = [f"{_rel(f)}: {word}" for f in files for word in outside if word in f.read_text(encoding="utf-8")]
    assert not hits, hits
