"""The import rules (pyproject's [tool.importlinter] contracts) hold, and the check fails when one is broken."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first, so that the checked tree (not an installed copy) is what import-linter analyses.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [LINT, "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_contract_is_kept() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.fixture(scope="module")
def copy_of_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for name in ("service", "models"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        ("service/batching/batcher.py", "import service.api.app", "Each layer uses only the layers below it"),
        (
            "service/observability/metrics.py",
            "import service.jobs.pipeline",
            "Each layer uses only the layers below it",
        ),
        ("service/jobs/pipeline.py", "import fastapi", "Only api (and bench.servers) imports the web framework"),
        (
            "service/outbound/remote.py",
            "import starlette.requests",
            "Only api (and bench.servers) imports the web framework",
        ),
        ("service/jobs/chunking.py", "import torch", "Only models and inference import an ML framework"),
        ("models/base.py", "import asyncio", "Models are pure ML"),
        ("service/offline/runner.py", "import ray", "Only scale imports ray"),
        ("service/scale/deployment.py", "import torch", "Only models and inference import an ML framework"),
        ("service/outbound/remote.py", "import httpcore2", "Only the benchmark's HTTP stacks import httpcore"),
    ],
)
def test_a_planted_import_breaks_its_contract(copy_of_tree: Path, module: str, planted: str, contract: str) -> None:
    target = copy_of_tree / module
    original = target.read_text(encoding="utf-8")
    target.write_text(original + f"\n{planted}  # planted by the test\n", encoding="utf-8")
    try:
        done = _lint(copy_of_tree)
    finally:
        target.write_text(original, encoding="utf-8")
    assert done.returncode != 0, done.stdout
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), done.stdout


def test_every_top_level_module_sits_in_a_layer() -> None:
    # A module outside every layer is bound by no rule: a new file at service/ must be given its place.
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    found = {
        f"service.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "service").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert found - placed == set(), f"modules in no layer: {sorted(found - placed)}"
