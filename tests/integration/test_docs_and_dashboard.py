"""Docs and dashboard over HTTP (no browser): assets from the package, the security scheme, examples, stats."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from service.api.app import create_app
from service.config import Settings
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server

API_KEY = "docs-test-key-0123456789"
BODY_ROUTES = (
    "/v1/embeddings",
    "/v1/classify",
    "/v1/process",
    "/process/",
    "/v1/process/stream",
    "/stream/",
    "/predict/",
)


@pytest.fixture(scope="module")
def keyed(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> Iterator[str]:
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir, auth_mode="api-key", api_keys=API_KEY)
    with running_server(create_app(settings)) as url:
        wait_ready(url)
        yield url


def _get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, timeout=30, trust_env=False, **kwargs)


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/dashboard"])
def test_pages_load_without_credentials_and_name_no_other_host(keyed: str, page: str) -> None:
    response = _get(keyed + page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    loaded = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert loaded, "the page loads nothing?"
    for ref in loaded:
        assert ref.startswith(("/", "data:")), f"{page} loads {ref} from elsewhere"
        if ref.startswith("/static/"):
            asset = _get(keyed + ref)
            assert asset.status_code == 200 and len(asset.content) > 1000, ref


def test_docs_assets_come_from_the_installed_package(keyed: str) -> None:
    from importlib.resources import files

    package = files("fastapi_offline") / "static"
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        served = _get(f"{keyed}/static/docs/{name}")
        assert served.status_code == 200
        assert served.content == (package / name).read_bytes()


def test_static_prefixes_do_not_open_other_paths(keyed: str) -> None:
    assert _get(f"{keyed}/static/docs/../../v1/models").status_code in (401, 404)
    assert _get(f"{keyed}/static/other/file.js").status_code == 401


def test_schema_declares_bearer_for_every_protected_operation_and_examples_for_every_body(keyed: str) -> None:
    schema = _get(f"{keyed}/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            expected: list[dict[str, list[str]]] | None = (
                None if path in ("/health", "/ready", "/metrics") else [{"bearer": []}]
            )
            assert operation.get("security") == expected, path
    for path in BODY_ROUTES:
        examples = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
        assert examples, path
    process = schema["paths"]["/v1/process"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert set(process) == {"classic", "mixed"}
    mixed = process["mixed"]["value"]["targets"]
    assert {"model": "tiny-embed"} in mixed and any("url" in t for t in mixed)
    embeddings = schema["paths"]["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]
    assert embeddings["examples"]["openai"]["value"]["model"] == "tiny-embed"


def test_every_example_is_a_valid_request_here(keyed: str) -> None:
    """The examples "Try it out" sends as they stand: the local ones succeed on this server."""
    schema = _get(f"{keyed}/openapi.json").json()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for path in ("/v1/embeddings", "/v1/classify", "/v1/process", "/predict/"):
        content = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        first = next(iter(content["examples"].values()))["value"]
        response = httpx.post(keyed + path, json=first, headers=headers, timeout=30, trust_env=False)
        assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize(("mode", "fmt"), [("jwt", "JWT"), ("none", None)])
def test_the_scheme_follows_the_auth_mode(mode: str, fmt: str | None) -> None:
    values: dict[str, Any] = {"auth_mode": mode}
    if mode == "jwt":
        values["jwt_secret"] = "s" * 40
    schema = create_app(Settings(**values)).openapi()
    schemes = schema.get("components", {}).get("securitySchemes", {})
    if fmt is None:
        assert "bearer" not in schemes
        assert all("security" not in op for ops in schema["paths"].values() for op in ops.values())
    else:
        assert schemes["bearer"]["bearerFormat"] == fmt
        assert schema["paths"]["/v1/embeddings"]["post"]["security"] == [{"bearer": []}]


def test_dashboard_stats_need_a_key_and_count_what_ran(keyed: str) -> None:
    assert _get(f"{keyed}/dashboard/stats").status_code == 401
    headers = {"Authorization": f"Bearer {API_KEY}"}
    first = _get(f"{keyed}/dashboard/stats", headers=headers).json()
    inputs = first["models"].get("tiny-embed", {}).get("inputs", 0)
    for _ in range(3):
        ok = httpx.post(
            f"{keyed}/v1/embeddings", json={"input": ["a", "bb", "ccc"]}, headers=headers, timeout=30, trust_env=False
        )
        assert ok.status_code == 200
    stats = _get(f"{keyed}/dashboard/stats", headers=headers).json()
    embed = stats["models"]["tiny-embed"]
    assert embed["inputs"] - inputs == 9
    assert embed["queue_depth"] == 0 and 0 < embed["fill_ratio"] <= 1 and 0 <= embed["padding_share"] < 1
    assert sum(embed["batch_sizes"].values()) == embed["batches"]
    route = next(r for r in stats["routes"] if r["route"] == "/v1/embeddings")
    assert route["count"] >= 3 and 0 < route["p50_ms"] <= route["p99_ms"]
    assert stats["requests_in_flight"] == 0 and stats["jobs_in_flight"] == 0
    assert {m["id"] for m in stats["models_served"]} == {"tiny-embed", "tiny-clf"}


def test_dashboard_stats_count_a_running_job_until_it_ends(
    tiny_bert_dir: Path, tiny_classifier_dir: Path, fake: str
) -> None:
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir, remote_allowlist=["127.0.0.0/8"])
    # The remote holds its answer far longer than the test runs: the job is surely running until the client leaves.
    body = {"text": "One. Two.", "targets": [{"url": f"{fake}/generic?latency_ms=60000"}]}
    with running_server(create_app(settings)) as url:
        wait_ready(url)
        assert _get(f"{url}/dashboard/stats").json()["jobs_in_flight"] == 0
        with (
            httpx.Client(timeout=30, trust_env=False) as client,
            connect_sse(client, "POST", f"{url}/v1/process/stream", json=body) as source,
        ):
            events = source.iter_sse()  # kept: a dropped iterator closes the stream
            assert next(events).event == "progress"
            running = _get(f"{url}/dashboard/stats").json()
        assert running["jobs_in_flight"] == 1
        assert running["requests_in_flight"] == 1  # the stream (the stats request does not count itself)
        # The client left: the server cancels the job and frees its slot (noticed asynchronously, so waited for).
        deadline = time.monotonic() + 30
        while _get(f"{url}/dashboard/stats").json()["jobs_in_flight"] != 0:
            assert time.monotonic() < deadline, "the job was still counted 30 s after its client left"
            time.sleep(0.05)
