"""``chunkserve serve --ray``: a local Ray started by the command, one replica, then a clean stop on SIGTERM."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.conftest import wait_ready
from tests.support.processes import server_process

pytest.importorskip("ray.serve")
pytestmark = pytest.mark.timeout(240)


def test_serve_ray_serves_the_app_and_stops_cleanly(
    tiny_bert_dir: Path, tiny_classifier_dir: Path, tiny_url: str, tmp_path: Path
) -> None:
    args = ["--ray", "--replicas", "1", "--replica-cpus", "0.5", "--device", "cpu", "--torch-threads", "1"]
    args += ["--model", f"tiny-embed={tiny_bert_dir}:embedding", "--model", f"tiny-clf={tiny_classifier_dir}"]
    # Ray's sockets and logs in a short private directory, not the machine-wide /tmp/ray.
    env = {"RAY_TMPDIR": tempfile.mkdtemp(prefix="csray-", dir="/tmp"), "CHUNKSERVE_MAX_BATCH_SIZE": "4"}
    with server_process(args, tmp_path, env=env, start_timeout_s=120) as server:
        wait_ready(server.url, timeout_s=120)
        body = {"model": "tiny-embed", "input": ["through the Ray proxy", "second"]}
        via_ray = httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=30)
        direct = httpx.post(f"{tiny_url}/v1/embeddings", json=body, timeout=30)
        assert via_ray.status_code == 200, via_ray.text
        np.testing.assert_allclose(
            [d["embedding"] for d in via_ray.json()["data"]], [d["embedding"] for d in direct.json()["data"]], atol=1e-5
        )
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(90) == 0, server.log_path.read_text()[-3000:]
