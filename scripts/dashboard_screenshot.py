"""Take the README's dashboard screenshot: the packaged model under a little load, a fake remote, a streamed job.

Run from the repository root with chromium installed: ``python scripts/dashboard_screenshot.py docs/img/dashboard.png``.
Everything runs on 127.0.0.1 and stops by itself (bounded requests).
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import httpx

from service.api.app import create_app
from service.bench.servers.fake_remote import FakeRemoteConfig, create_fake_remote
from service.config import Settings
from tests.integration.conftest import wait_ready
from tests.support.browser import chromium, find_chromium
from tests.support.servers import running_server

WORDS = "the batcher sorts each window by length so that little padding is computed and thrown away".split()
TEXT = " ".join(
    f"Paragraph {i} of a long report. It says {' '.join(WORDS[: 4 + i % 12])}. Chunks go to the model or the remote."
    for i in range(24)
)


def _load(url: str, fake: str, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
        for i in range(400):
            if stop.is_set():
                return
            texts = [" ".join(WORDS[: 3 + (i + k) % len(WORDS)]) for k in range(1 + i % 6)]
            client.post("/v1/embeddings", json={"input": texts})
            if i % 20 == 0:
                remote = [{"url": f"{fake}/generic?latency_ms=80"}, {"url": f"{fake}/generic?status=404"}]
                client.post("/v1/process", json={"text": TEXT[:600], "chunk_size": 100, "targets": remote})


def main(out: Path) -> None:
    """Serve, load, stream one job in the page, and save the screenshot to ``out``."""
    executable = find_chromium()
    if executable is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    settings = Settings(remote_allowlist=["127.0.0.1"], torch_threads=1)
    with (
        running_server(create_fake_remote(FakeRemoteConfig(latency_s=0.05))) as fake,
        running_server(create_app(settings), start_timeout_s=120) as url,
        tempfile.TemporaryDirectory() as work,
        chromium(executable, Path(work)) as page,
    ):
        wait_ready(url, timeout_s=180)
        stop = threading.Event()
        load = threading.Thread(target=_load, args=(url, fake, stop), daemon=True)
        load.start()
        try:
            page.goto(f"{url}/dashboard")
            page.wait_for("window.chunkserveDashboard.polls > 2", what="a few polls")
            page.evaluate(f"document.getElementById('text').value = {TEXT!r}")
            page.evaluate(f"document.getElementById('remote-url').value = {fake + '/generic?latency_ms=300'!r}")
            page.evaluate("document.getElementById('chunk-size').value = '160'")
            page.click("#run")
            page.wait_for("window.chunkserveDashboard.highlights.length >= 6", what="some chunks back", timeout_s=60)
            polls = page.evaluate("window.chunkserveDashboard.polls")
            page.wait_for(f"window.chunkserveDashboard.polls > {polls}", what="one more poll")
            page.screenshot(out)
        finally:
            stop.set()
            load.join(60)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/dashboard.png"))
