"""The rule that picks batching and threading defaults from what the machine is, as a pure function."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.inference.machine import Machine, choose_defaults, cpu_flags, detect_machine

AMX_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse2 avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8
processor\t: 1
flags\t\t: fpu vme sse2 avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8
"""
AVX2_CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n"


@pytest.mark.parametrize(
    ("machine", "batch", "wait_ms", "threads"),
    [
        (Machine(cores=2, avx512=True, amx=True), 8, 0.0, 2),  # this project's build machine
        (Machine(cores=2), 8, 0.0, 2),  # the AVX2-only machine of issue 15
        (Machine(cores=1), 8, 0.0, 1),
        (Machine(cores=0), 8, 0.0, 1),  # a count that cannot be right still gives a working policy
        (Machine(cores=4, avx512=True), 8, 0.0, 4),
        (Machine(cores=8), 16, 0.0, 4),
        (Machine(cores=64, avx512=True, amx=True), 16, 0.0, 4),
        (Machine(cores=2, gpu=True), 64, 2.0, 2),
        (Machine(cores=32, amx=True, gpu=True), 64, 2.0, 4),
    ],
)
def test_defaults_follow_cores_and_gpu(machine: Machine, batch: int, wait_ms: float, threads: int) -> None:
    chosen = choose_defaults(machine)
    assert (chosen.max_batch_size, chosen.max_wait_ms, chosen.torch_threads) == (batch, wait_ms, threads)


def test_the_reason_names_what_was_seen() -> None:
    assert "AMX" in choose_defaults(Machine(cores=2, avx512=True, amx=True)).reason
    assert "AVX2 or older" in choose_defaults(Machine(cores=2)).reason
    assert "2 usable cores" in choose_defaults(Machine(cores=2)).reason
    assert choose_defaults(Machine(cores=2, gpu=True)).reason.startswith("GPU")


def test_cpu_flags_are_read_from_cpuinfo_text() -> None:
    assert {"avx512f", "amx_tile", "avx2"} <= cpu_flags(AMX_CPUINFO)
    assert "avx512f" not in cpu_flags(AVX2_CPUINFO)
    assert cpu_flags("") == frozenset()


def test_detection_reads_the_given_cpuinfo(tmp_path: Path) -> None:
    amx = tmp_path / "amx"
    amx.write_text(AMX_CPUINFO)
    avx2 = tmp_path / "avx2"
    avx2.write_text(AVX2_CPUINFO)
    seen = detect_machine(amx)
    assert (seen.avx512, seen.amx) == (True, True)
    assert seen.cores >= 1
    assert (detect_machine(avx2).avx512, detect_machine(avx2).amx) == (False, False)
    assert detect_machine(tmp_path / "missing").avx512 is False
