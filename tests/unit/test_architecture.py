"""The import directions of ARCHITECTURE.md, enforced by parsing every module with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p for pkg in ("service", "models") for p in (ROOT / pkg).rglob("*.py"))

WEB = {"fastapi", "starlette"}
ML = {"torch", "transformers", "tokenizers", "sentence_transformers"}
# Modules low in the stack: they must not reach up into the rest of the project.
LEAVES = [
    "batcher",
    "batch_ledger",
    "batch_policy",
    "chunking",
    "text_bounds",
    "guard",
    "addresses",
    "security",
    "quotas",
    "errors",
    "schemas",
    "trace",
    "aionet",
    "heap",
]
EXISTING_LEAVES = [f"service/{name}.py" for name in LEAVES if (ROOT / "service" / f"{name}.py").exists()]
LEAF_ALLOWED = {
    "service.errors",
    "service.batch_ledger",
    "service.batch_policy",
    "service.trace",
    "service.addresses",
    "service.text_bounds",
}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


def test_modules_were_found() -> None:
    assert len(MODULES) > 10


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_only_the_api_package_imports_the_web_framework(path: Path) -> None:
    rel = _rel(path)
    # The fake remote is a separate little server for tests and benchmarks, not part of the service.
    if rel.startswith("service/api/") or rel.startswith("service/bench/fake_"):
        return
    assert not {_top(n) for n in _imports(path)} & WEB, f"{rel} imports fastapi/starlette"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_only_models_and_the_engine_import_torch(path: Path) -> None:
    rel = _rel(path)
    if rel.startswith("models/") or rel == "service/engine.py":
        return
    assert not {_top(n) for n in _imports(path)} & ML, f"{rel} imports an ML framework"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_models_know_nothing_of_the_service(path: Path) -> None:
    rel = _rel(path)
    if not rel.startswith("models/"):
        return
    tops = {_top(n) for n in _imports(path)}
    assert not tops & ({"service", "asyncio", "httpx"} | WEB), f"{rel} reaches into the service layer"


@pytest.mark.parametrize("rel", EXISTING_LEAVES)
def test_leaf_modules_import_nothing_above_them(rel: str) -> None:
    path = ROOT / rel
    project = {n for n in _imports(path) if _top(n) in {"service", "models"}}
    assert project <= LEAF_ALLOWED, f"{rel} imports {sorted(project - LEAF_ALLOWED)}"


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
