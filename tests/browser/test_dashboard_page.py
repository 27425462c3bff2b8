"""/dashboard in a real headless Chromium: it asks for the key, its numbers move under load, chunks light up."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.browser.conftest import API_KEY
from tests.support.browser import Page, origin_of

MAX_LOAD_REQUESTS = 2000  # a bound; the load stops as soon as the page has shown it


def _unlock(page: Page, url: str) -> None:
    page.goto(f"{url}/dashboard")
    page.wait_for("!document.getElementById('auth').hidden", what="the page to ask for a key (stats answered 401)")
    page.type_text("#token", API_KEY)
    page.click("#auth-save")
    page.wait_for("window.chunkserveDashboard.polls > 0", what="the first stats with the key")


def _load(url: str, stop: threading.Event, sent: list[int]) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30, trust_env=False) as client:
        for i in range(MAX_LOAD_REQUESTS):
            if stop.is_set():
                return
            client.post("/v1/embeddings", json={"model": "tiny-embed", "input": [f"text {i} " * (1 + i % 9)] * 3})
            sent.append(i)


def test_dashboard_numbers_change_while_a_load_runs(page: Page, keyed_url: str, tmp_path: Path) -> None:
    _unlock(page, keyed_url)
    before = int(page.evaluate("document.querySelector('#models tr[data-model=\"tiny-embed\"] .batches').innerText"))
    stop, sent = threading.Event(), list[int]()
    load = threading.Thread(target=_load, args=(keyed_url, stop, sent), daemon=True)
    load.start()
    try:
        after = page.wait_for(
            "(() => { const n = Number(document.querySelector('#models tr[data-model=\"tiny-embed\"] .batches')"
            f".innerText); return n > {before} && n; }})()",
            what="the batch count to grow on the page",
        )
        still_loading = load.is_alive()
        page.screenshot(tmp_path / "dashboard-under-load.png")
    finally:
        stop.set()
        load.join(30)
    assert still_loading, "the load had ended before the page showed it"
    assert after > before
    inputs = int(page.evaluate("document.querySelector('#models tr[data-model=\"tiny-embed\"] .inputs').innerText"))
    assert inputs >= 3 * after  # three inputs per request, at least
    routes = page.evaluate("document.getElementById('routes').innerText")
    assert "POST /v1/embeddings" in routes
    assert page.hosts() == {origin_of(keyed_url)}


def test_pasted_text_chunks_light_up_as_their_results_arrive(page: Page, keyed_url: str, tmp_path: Path) -> None:
    _unlock(page, keyed_url)
    # An emoji in every sentence: the server's spans count code points, JavaScript's indices UTF-16 units.
    text = "".join(f"Sentence number {i} says something 🍜. " for i in range(30))
    page.evaluate(f"document.getElementById('text').value = {text!r}")
    page.evaluate("document.getElementById('chunk-size').value = '80'")
    page.click("#run")
    page.wait_for("document.getElementById('job-status').innerText.startsWith('finished')", what="the job to finish")
    page.screenshot(tmp_path / "dashboard-chunks.png")
    highlights = page.evaluate("window.chunkserveDashboard.highlights")
    expected = httpx.post(
        f"{keyed_url}/v1/process",
        json={
            "text": text,
            "chunking": "sentences",
            "chunk_size": 80,
            "targets": [{"model": "tiny-embed"}],
            "include_text": True,
        },
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
        trust_env=False,
    ).json()["chunks"]
    assert len(expected) > 5
    assert sorted((h["index"], h["start"], h["end"]) for h in highlights) == [
        (c["index"], c["start"], c["end"]) for c in expected
    ]
    # Each result event lit its own chunk at once: one more highlighted span per event, never a batch at the end.
    assert [h["painted"] for h in highlights] == list(range(1, len(expected) + 1))
    painted = page.evaluate(
        "Array.from(document.querySelectorAll('#highlight .done')).map(s => [Number(s.dataset.start), s.textContent])"
    )
    assert painted == [[c["start"], c["text"]] for c in expected]
