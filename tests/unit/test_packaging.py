"""A non-editable install carries the dashboard's files: the wheel holds them (setuptools package data)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "service" / "api" / "static"


def test_the_wheel_contains_every_static_file(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy, so that building leaves no build/ folder in the work tree
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("service", "models"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(source),
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("chunkserve-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    assert {"service/api/static/dashboard/index.html", "service/api/static/dashboard/dashboard.js"} <= expected
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
