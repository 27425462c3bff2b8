"""The README stays true: its set-up commands are what CI runs, and every setting is in its table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = _bash_blocks(README)[1].strip()
    assert test_command.endswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines()


def test_the_first_command_installs_and_serves_the_default_model() -> None:
    serve_command = _bash_blocks(README)[0].strip()
    assert serve_command.endswith("chunkserve serve")
    assert "-e ." in serve_command


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_has_a_row_in_the_configuration_table(name: str) -> None:
    env = f"CHUNKSERVE_{name.upper()}"
    rows = [line for line in README.splitlines() if line.startswith(f"| `{env}`")]
    assert len(rows) == 1, f"{env} needs exactly one row in the README's configuration table"


PACKAGES = sorted(p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "service").glob("*/__init__.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_every_service_folder_is_in_the_layout_docs(package: str) -> None:
    # A folder added or renamed without a word in the docs leaves a newcomer guessing what it holds.
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert f"`{package}/`" in README, f"README's layout table has no row for {package}/"
    assert f"{package}/" in architecture, f"docs/architecture.md does not mention {package}/"
