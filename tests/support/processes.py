"""``chunkserve serve`` as a real child process on 127.0.0.1, port 0; the bound port comes from ``--port-file``."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServerProcess:
    """A running server: its process, base URL and the file its logs (stderr and stdout) go to."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_lines(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far (other lines, such as progress bars, are skipped)."""
        lines = []
        for raw in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            raw = raw.strip()
            if raw.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(raw))
        return lines


@contextlib.contextmanager
def server_process(
    args: list[str], workdir: Path, *, env: dict[str, str] | None = None, start_timeout_s: float = 180.0
) -> Iterator[ServerProcess]:
    """Run ``python -m service.cli serve ARGS --host 127.0.0.1 --port 0`` until the block ends (then kill it).

    Raises:
        RuntimeError: the process exited, or wrote no port file within ``start_timeout_s``.
    """
    port_file = workdir / "port"
    log_path = workdir / "server.log"
    cmd = [sys.executable, "-m", "service.cli", "serve", *args]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
    child_env = {**os.environ, "HF_HUB_OFFLINE": "1", "CHUNKSERVE_LOG_FORMAT": "json", **(env or {})}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_timeout_s
        while not port_file.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no port file within {start_timeout_s} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        port = int(port_file.read_text().strip())
        yield ServerProcess(proc, f"http://127.0.0.1:{port}", log_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
