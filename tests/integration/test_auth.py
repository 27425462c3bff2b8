"""The auth matrix over HTTP, SSE and WebSocket on real servers, default-deny routes, rate limits, insecure bind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from httpx_sse import connect_sse
from starlette.routing import Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from models.base import Task
from service.api.app import create_app
from service.api.routes import ws
from service.inference.model_entry import ModelEntry
from tests.integration.conftest import tiny_settings, wait_ready
from tests.support.servers import running_server
from tests.support.tokens import claims, forge_hs256, public_pem

ROOT = Path(__file__).resolve().parents[2]
SECRET = "integration-secret-" + "x" * 40
OTHER_SECRET = "someone-elses-secret-" + "y" * 40
API_KEY = "alice-key-" + "a" * 30
JOB = {"text": "Hello there. A second sentence.", "targets": [{"model": "tiny-embed"}]}
REFUSED = "missing or invalid credentials"


@contextmanager
def serving(tiny_bert_dir: Path, tiny_classifier_dir: Path, **overrides: Any) -> Iterator[str]:
    models = [ModelEntry(id="tiny-embed", path=tiny_bert_dir, task=Task.EMBEDDING)]
    settings = tiny_settings(tiny_bert_dir, tiny_classifier_dir, models=models, **overrides)
    with running_server(create_app(settings)) as url:
        wait_ready(url)
        yield url


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def servers(tiny_bert_dir: Path, tiny_classifier_dir: Path, rsa_key: rsa.RSAPrivateKey) -> Iterator[dict[str, str]]:
    """One server per way of checking credentials."""
    with (
        serving(
            tiny_bert_dir,
            tiny_classifier_dir,
            auth_mode="jwt",
            jwt_secret=SECRET,
            jwt_audience="chunkserve",
            jwt_issuer="test-idp",
            jwt_leeway_s=0,
        ) as hs,
        serving(tiny_bert_dir, tiny_classifier_dir, auth_mode="jwt", jwt_public_key=public_pem(rsa_key)) as rs,
        serving(tiny_bert_dir, tiny_classifier_dir, auth_mode="api-key", api_keys=f"alice:{API_KEY}") as keys,
    ):
        yield {"hs": hs, "rs": rs, "keys": keys}


def hs_claims(**overrides: Any) -> dict[str, Any]:
    return claims(**{"aud": "chunkserve", "iss": "test-idp", **overrides})


# (server, token maker, accepted); a maker gets the RSA key.
CASES: dict[str, tuple[str, Any, bool]] = {
    "no token": ("hs", lambda k: None, False),
    "bad signature": ("hs", lambda k: jwt.encode(hs_claims(), OTHER_SECRET, algorithm="HS256"), False),
    "alg none": ("hs", lambda k: jwt.encode(hs_claims(), "", algorithm="none"), False),
    "expired": ("hs", lambda k: jwt.encode(hs_claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256"), False),
    "wrong audience": ("hs", lambda k: jwt.encode(hs_claims(aud="other"), SECRET, algorithm="HS256"), False),
    "hs/rs confusion": ("rs", lambda k: forge_hs256(claims(), public_pem(k).encode()), False),
    "unknown api key": ("keys", lambda k: "mallory-key-" + "m" * 30, False),
    "good hs256 token": ("hs", lambda k: jwt.encode(hs_claims(), SECRET, algorithm="HS256"), True),
    "good rs256 token": ("rs", lambda k: jwt.encode(claims(), k, algorithm="RS256"), True),
    "good api key": ("keys", lambda k: API_KEY, True),
}


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["error"]["message"] == REFUSED and body["error"]["code"] == "invalid_credentials"


def _http(url: str, token: str | None, accepted: bool) -> None:
    response = httpx.post(f"{url}/v1/process", json=JOB, headers=_headers(token), timeout=30)
    if not accepted:
        _assert_refused(response)
        return
    assert response.status_code == 200, response.text
    assert response.json()["successful"] == response.json()["total"] == 1


def _sse(url: str, token: str | None, accepted: bool) -> None:
    with (
        httpx.Client(timeout=30, headers=_headers(token)) as client,
        connect_sse(client, "POST", f"{url}/v1/process/stream", json=JOB) as source,
    ):
        if not accepted:
            source.response.read()
            _assert_refused(source.response)
            return
        kinds = [sse.event for sse in source.iter_sse()]
    assert kinds[0] == "progress" and kinds[-1] == "summary" and kinds.count("result") == 1


def _ws(url: str, token: str | None, accepted: bool, *, via_subprotocol: bool, path: str = "/v1/ws") -> None:
    ws_url = url.replace("http://", "ws://") + path
    options: dict[str, Any] = {"open_timeout": 30}
    if token is not None and via_subprotocol:
        options["subprotocols"] = ["bearer", token]
    else:
        options["additional_headers"] = _headers(token)
    if not accepted:
        with pytest.raises(InvalidStatus) as info, ws_connect(ws_url, **options):
            pass
        assert info.value.response.status_code == 401
        assert info.value.response.headers["WWW-Authenticate"] == "Bearer"
        assert json.loads(info.value.response.body or b"{}")["error"]["message"] == REFUSED
        return
    with ws_connect(ws_url, **options) as ws:
        assert ws.subprotocol == ("bearer" if via_subprotocol and token is not None else None)
        ws.send(json.dumps({**JOB, "job_id": "j1"}))
        kinds: list[str] = []
        while not kinds or kinds[-1] not in ("done", "error"):
            kinds.append(json.loads(ws.recv(timeout=30))["type"])
    assert kinds[-1] == "done" and "result" in kinds


@pytest.mark.parametrize("channel", ["http", "sse", "ws-header", "ws-subprotocol"])
@pytest.mark.parametrize("case", list(CASES))
def test_auth_matrix(servers: dict[str, str], rsa_key: rsa.RSAPrivateKey, case: str, channel: str) -> None:
    server, make, accepted = CASES[case]
    url, token = servers[server], make(rsa_key)
    if channel == "http":
        _http(url, token, accepted)
    elif channel == "sse":
        _sse(url, token, accepted)
    else:
        _ws(url, token, accepted, via_subprotocol=channel == "ws-subprotocol")


def _endpoints(app: FastAPI) -> Iterator[tuple[str, str]]:
    """Every HTTP method and path the app serves (its schema plus the docs pages), and its WebSockets."""
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            yield method.upper(), path.replace("{model_id}", "tiny-embed")
    for route in app.routes:
        if isinstance(route, Route) and not route.include_in_schema:
            yield "GET", route.path
    for route in ws.router.routes:
        if isinstance(route, WebSocketRoute):
            yield "WS", route.path


# Open: probes, metrics (auth_metrics off), and the pages that hold no data but must load before a person can
# type a key: the docs (their schema too) and the dashboard's page; the dashboard's data is protected.
OPEN_WITHOUT_CREDENTIALS = ("/health", "/ready", "/metrics", "/docs", "/redoc", "/openapi.json", "/dashboard")


def test_every_route_but_health_ready_metrics_and_the_pages_needs_credentials(
    servers: dict[str, str], tiny_bert_dir: Path, tiny_classifier_dir: Path
) -> None:
    app = create_app(tiny_settings(tiny_bert_dir, tiny_classifier_dir))  # only for its route table
    seen = set()
    for method, path in _endpoints(app):
        seen.add(path)
        url = servers["keys"] + path
        if method == "WS":
            _ws(servers["keys"], None, accepted=False, via_subprotocol=False, path=path)
            continue
        response = httpx.request(method, url, timeout=30)
        if path in OPEN_WITHOUT_CREDENTIALS:
            assert response.status_code == 200, (method, path)
        else:
            _assert_refused(response)
    assert {"/v1/embeddings", "/v1/process", "/v1/ws", "/chat/", "/docs", "/openapi.json", "/metrics"} <= seen
    assert {"/predict/", "/dashboard", "/dashboard/stats", "/redoc"} <= seen
    _assert_refused(httpx.get(servers["keys"] + "/no/such/route", timeout=30))  # no route discovery either
    models = httpx.get(servers["keys"] + "/v1/models", headers=_headers(API_KEY), timeout=30)
    assert models.status_code == 200 and models.json()["data"][0]["id"] == "tiny-embed"


def test_each_caller_has_its_own_rate_limit(tiny_bert_dir: Path, tiny_classifier_dir: Path) -> None:
    keys = {"alice": "alice-" + "a" * 20, "bob": "bob-" + "b" * 20}
    api_keys = ",".join(f"{name}:{key}" for name, key in keys.items())
    with serving(
        tiny_bert_dir,
        tiny_classifier_dir,
        auth_mode="api-key",
        api_keys=api_keys,
        rate_limit_per_s=0.01,  # so slow a refill that none happens during the test
        rate_limit_burst=2,
    ) as url:
        alice = [httpx.get(f"{url}/v1/models", headers=_headers(keys["alice"])) for _ in range(3)]
        assert [r.status_code for r in alice] == [200, 200, 429]
        limited = alice[2]
        assert 1 <= int(limited.headers["retry-after"]) <= 100
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert httpx.get(f"{url}/v1/models", headers=_headers(keys["bob"])).status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200  # open paths are not counted
        assert httpx.get(f"{url}/v1/models", headers=_headers("x" * 20)).status_code == 401


def test_serving_a_public_address_without_auth_exits_before_binding(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUNKSERVE_")}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, not whatever is installed
    # The missing model directory is a second stop before binding, should the auth check ever vanish.
    argv = ["serve", "--host", "0.0.0.0", "--port", "0", "--model", f"x={tmp_path / 'missing'}"]
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "refusing to serve on 0.0.0.0 without authentication" in done.stderr
    assert "--insecure" in done.stderr
    assert "Uvicorn running" not in done.stderr + done.stdout and "Loading" not in done.stderr + done.stdout
