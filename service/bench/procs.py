"""Start the server and the fake remote as child processes for a benchmark (loopback only)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx


def free_port() -> int:
    """A free loopback port (benchmarks only; tests bind port 0 themselves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` has used so far (Linux /proc; 0 elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ProcessWatch:
    """CPU seconds used and the highest RSS seen of one process over a ``with`` block (sampled every 0.1 s)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.cpu_s = 0.0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._cpu0 = 0.0

    def _sample(self) -> None:
        while self.pid is not None:
            self.peak_rss = max(self.peak_rss, rss_bytes(self.pid))
            if self._stop.wait(0.1):
                return

    def __enter__(self) -> ProcessWatch:
        if self.pid is not None:
            self._cpu0 = cpu_seconds(self.pid)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pid is not None:
            self._stop.set()
            self._thread.join()
            self.cpu_s = cpu_seconds(self.pid) - self._cpu0


@contextlib.contextmanager
def spawned(
    args: list[str],
    ready_path: str,
    env: dict[str, str] | None = None,
    timeout_s: float = 180.0,
    module: str = "service.cli",
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``python -m MODULE ARGS --port P`` until the block ends; yields its URL once ``ready_path`` answers 200.

    Raises:
        SystemExit: the process exited, or was not ready within ``timeout_s``.
    """
    port = free_port()
    cmd = [sys.executable, "-m", module, *args, "--host", "127.0.0.1", "--port", str(port)]
    with running(
        cmd,
        f"http://127.0.0.1:{port}",
        ready_path,
        env={**os.environ, "CHUNKSERVE_LOG_LEVEL": "warning", **(env or {})},
        timeout_s=timeout_s,
        name=" ".join(args),
    ) as (url, proc):
        yield url, proc


@contextlib.contextmanager
def running(
    cmd: list[str],
    url: str,
    ready_path: str,
    *,
    env: dict[str, str],
    timeout_s: float,
    name: str,
    stdout: int | None = None,
    poll_s: float = 0.3,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``cmd``, wait until ``url + ready_path`` answers 200, and stop the process when the block ends.

    Raises:
        SystemExit: the process exited, or was not ready within ``timeout_s``.
    """
    proc = subprocess.Popen(cmd, env=env, stdout=stdout)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"bench: {name} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}{ready_path}", timeout=2, trust_env=False).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {name} was not ready within {timeout_s:.0f} s")
            time.sleep(poll_s)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
