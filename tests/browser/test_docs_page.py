"""/docs and /redoc in a real headless Chromium: assets from the server only, and Try it out with a key."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.browser.conftest import API_KEY
from tests.support.browser import Page, origin_of

EMBEDDINGS_OP = "#operations-embeddings-create_embeddings_v1_embeddings_post"
LIVE_STATUS = f"{EMBEDDINGS_OP} .live-responses-table tr.response .response-col_status"


def _operation_count(url: str) -> int:
    schema = httpx.get(f"{url}/openapi.json", timeout=10, trust_env=False).json()
    return sum(len(methods) for methods in schema["paths"].values())


def test_docs_render_every_operation_with_no_request_leaving_the_server(
    page: Page, keyed_url: str, tmp_path: Path
) -> None:
    expected = _operation_count(keyed_url)
    page.goto(f"{keyed_url}/docs")
    shown = page.wait_for(
        f"document.querySelectorAll('.opblock').length >= {expected} && document.querySelectorAll('.opblock').length",
        what=f"{expected} operations in Swagger UI",
    )
    page.screenshot(tmp_path / "docs.png")
    assert shown == expected
    assert page.hosts() == {origin_of(keyed_url)}, f"requests left the server: {page.hosts()}"
    assert page.blocked() == {}
    paths = {httpx.URL(r.url).path for r in page.requests.values() if not r.url.startswith("data:")}
    assert {"/docs", "/openapi.json", "/static/docs/swagger-ui-bundle.js", "/static/docs/swagger-ui.css"} <= paths


def test_redoc_renders_with_no_request_leaving_the_server(page: Page, keyed_url: str, tmp_path: Path) -> None:
    expected = _operation_count(keyed_url)
    page.goto(f"{keyed_url}/redoc")
    shown = page.wait_for(
        f"document.querySelectorAll('[data-section-id^=\"operation/\"]').length >= {expected}"
        " && document.querySelectorAll('[data-section-id^=\"operation/\"]').length",
        what=f"{expected} operations in ReDoc",
    )
    page.screenshot(tmp_path / "redoc.png")
    assert shown == expected
    assert page.hosts() == {origin_of(keyed_url)}, f"requests left the server: {page.hosts()}"
    # ReDoc's side menu always shows Redocly's logo from its CDN; the page's Content-Security-Policy stops the
    # browser from fetching it (the menu shows the text alone). Anything else it tried would show up here.
    assert page.blocked() == {"https://cdn.redoc.ly/redoc/logo-mini.svg": "csp"}
    assert "/static/docs/redoc.standalone.js" in {httpx.URL(r.url).path for r in page.requests.values()}


def test_authorize_then_try_it_out_on_embeddings_returns_200(page: Page, keyed_url: str, tmp_path: Path) -> None:
    page.goto(f"{keyed_url}/docs")
    page.wait_for(f"!!document.querySelector('{EMBEDDINGS_OP}')", what="the embeddings operation")
    page.click(".auth-wrapper button.authorize")
    page.wait_for("!!document.querySelector('.modal-ux input')", what="the Authorize dialog")
    page.type_text(".modal-ux input", API_KEY)
    page.click(".modal-ux button.authorize")
    page.wait_for("!!document.querySelector('.modal-ux button.btn-done')", what="the key accepted by the dialog")
    page.click(".modal-ux button.btn-done")
    page.click(f"{EMBEDDINGS_OP} .opblock-summary-control")
    page.wait_for(f"!!document.querySelector('{EMBEDDINGS_OP} .try-out__btn')", what="Try it out")
    page.click(f"{EMBEDDINGS_OP} .try-out__btn")
    page.wait_for(f"!!document.querySelector('{EMBEDDINGS_OP} button.execute')", what="Execute")
    page.click(f"{EMBEDDINGS_OP} button.execute")
    status = page.wait_for(
        f"(document.querySelector('{LIVE_STATUS}') || {{}}).innerText",
        what="the live response",
    )
    body = page.evaluate(f"document.querySelector('{EMBEDDINGS_OP} .live-responses-table .microlight').innerText")
    page.screenshot(tmp_path / "try-it-out.png")
    assert status.strip() == "200"
    assert '"object": "embedding"' in body and '"model": "tiny-embed"' in body
    sent = [r for r in page.requests.values() if r.method == "POST" and r.url.endswith("/v1/embeddings")]
    assert len(sent) == 1
    authorization = {k.lower(): v for k, v in sent[0].headers.items()}.get("authorization")
    assert authorization == f"Bearer {API_KEY}"
