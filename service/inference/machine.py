"""What the machine is (cores, vector units, GPU) and the batching defaults that follow from it.

``choose_defaults`` is a pure function of a ``Machine`` so the rule can be read and tested on its own; the
server only calls ``detect_machine`` once at start-up and logs the outcome with its reason.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# Measured with all-MiniLM-L6-v2 on 2 cores, windows of 64 sorted by length: batches of 8 beat 32 on Intel
# AVX-512/AMX (README, Benchmarks: 67 vs 50 inputs/s); on the AVX2-only AMD machine of issue 15, sorted batches of
# 8 ran 22.4 inputs/s against 13.7 for batch 1. Nothing measured so far picks a different size for either.
SMALL_CPU_BATCH = 8
# Not measured here (no machine with more than 2 cores was available): each GEMM of a batch is split over the
# intra-op threads, so a wider CPU needs a taller batch to keep every thread fed.
WIDE_CPU_BATCH = 16
WIDE_CPU_CORES = 8
MAX_TORCH_THREADS = 4  # past 4, a small encoder's per-op work is too small to split further
GPU_BATCH = 64
GPU_WAIT_MS = 2.0


@dataclass(frozen=True, slots=True)
class Machine:
    """The facts the defaults depend on."""

    cores: int
    avx512: bool = False
    amx: bool = False
    gpu: bool = False


@dataclass(frozen=True, slots=True)
class Defaults:
    """Batching and threading defaults for a machine, and why."""

    max_batch_size: int
    max_wait_ms: float
    torch_threads: int
    reason: str


def choose_defaults(machine: Machine) -> Defaults:
    """The batch size, idle wait and torch threads to use when the settings leave them unset.

    GPU: batches of 64 and a 2 ms wait for company (the GPU is idle between batches otherwise). CPU: one torch
    thread per usable core up to 4; batches of 8 up to 7 cores and of 16 from 8; no idle wait, since batches form
    anyway while the model is busy and a lone request would only pay the wait. The vector units (AVX2, AVX-512,
    AMX) are detected and reported but do not change the numbers: no measurement yet picks another size for them.
    """
    cores = max(1, machine.cores)
    threads = min(MAX_TORCH_THREADS, cores)
    isa = "AMX" if machine.amx else "AVX-512" if machine.avx512 else "AVX2 or older"
    if machine.gpu:
        return Defaults(GPU_BATCH, GPU_WAIT_MS, threads, "GPU: batches of 64, wait 2 ms for company")
    batch = WIDE_CPU_BATCH if cores >= WIDE_CPU_CORES else SMALL_CPU_BATCH
    reason = f"CPU with {cores} usable cores ({isa}): batches of {batch}, no idle wait, {threads} torch threads"
    return Defaults(batch, 0.0, threads, reason)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers narrow), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The first processor's feature flags from the text of /proc/cpuinfo (empty when there is none)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def detect_machine(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> Machine:
    """This machine's cores, AVX-512/AMX support and whether torch already sees a CUDA device."""
    try:
        flags = cpu_flags(cpuinfo_path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        flags = frozenset()
    torch = sys.modules.get("torch")  # detection must not be what imports torch; the loader already has
    gpu = bool(torch is not None and torch.cuda.is_available())
    return Machine(
        cores=usable_cores(),
        avx512="avx512f" in flags,
        amx="amx_tile" in flags,
        gpu=gpu,
    )
