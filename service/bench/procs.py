"""Start the server and the fake remote as child processes for a benchmark (loopback only)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
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


@contextlib.contextmanager
def spawned(
    args: list[str], ready_path: str, env: dict[str, str] | None = None, timeout_s: float = 180.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``chunkserve ARGS --port P`` until the block ends; yields its URL once ``ready_path`` answers 200."""
    port = free_port()
    cmd = [sys.executable, "-m", "service.cli", *args, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env={**os.environ, "CHUNKSERVE_LOG_LEVEL": "warning", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"bench: {' '.join(args)} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}{ready_path}", timeout=2, trust_env=False).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {' '.join(args)} was not ready within {timeout_s:.0f} s")
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
