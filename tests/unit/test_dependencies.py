"""Declared dependencies match what the service needs: nothing it never imports, versions with what it relies on."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
RUNTIME = {Requirement(r).name: Requirement(r) for r in PROJECT["dependencies"]}
DEV = {Requirement(r).name: Requirement(r) for r in PROJECT["optional-dependencies"]["dev"]}


def _imported_roots() -> set[str]:
    roots: set[str] = set()
    for path in [*(ROOT / "service").rglob("*.py"), *(ROOT / "models").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
    return roots


def test_httpx_is_a_dev_dependency_only_since_the_service_never_imports_it() -> None:
    assert "httpx" not in _imported_roots()  # the service speaks httpx2
    assert "httpx" not in RUNTIME
    assert "httpx" in DEV


def test_fastapi_is_new_enough_to_clean_up_dependencies_after_a_streamed_answer() -> None:
    # The SSE job slot is a dependency with yield; before FastAPI 0.118 its clean-up ran before the stream did.
    lowest = min(Version(spec.version) for spec in RUNTIME["fastapi"].specifier if spec.operator == ">=")
    assert lowest >= Version("0.118")
