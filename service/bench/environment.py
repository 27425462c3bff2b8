"""The machine and software a bench run measured on, for ``results.json`` and the report."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

# CPU flags that decide which settings win: wide vectors and matrix units.
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
_LIBRARIES = ("chunkserve", "torch", "transformers", "tokenizers", "fastapi", "uvicorn", "httpx", "httpx2", "numpy")


def _cpuinfo() -> dict[str, Any]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or "unknown", "flags": []}
    model, flags = "unknown", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return {"model": model, "flags": [f for f in _FLAGS if f in flags]}


def _gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """CPU model and flags, cores, GPUs, OS, Python and library versions."""
    cpu = _cpuinfo()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu["model"],
        "cpu_flags": cpu["flags"],
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "gpus": _gpus(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in _LIBRARIES},
    }


def describe(env: dict[str, Any]) -> str:
    """One line: "Intel Xeon ... (avx512f, amx_tile), 2 CPUs, no GPU"."""
    flags = ", ".join(env["cpu_flags"]) or "no AVX-512/AMX"
    gpus = "; ".join(env["gpus"]) or "no GPU"
    return f"{env['cpu_model']} ({flags}), {env['cpus_usable']} CPUs, {gpus}"
