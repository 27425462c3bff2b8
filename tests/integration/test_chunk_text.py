"""``include_text``: chunks' texts are echoed only when asked (JSON, SSE, WebSocket), and are then exact spans."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from websockets.sync.client import connect as ws_connect

# Multilingual, with a character outside the BMP: start/end count code points, and so must the echoed text.
TEXT = " ".join(f"Sentence {i} is about food 🍜 and service. 长文本也可以。" for i in range(12))


def _body(**extra: Any) -> dict[str, Any]:
    return {"text": TEXT, "chunk_size": 90, "targets": [{"model": "tiny-embed"}], **extra}


def _process(url: str, body: dict[str, Any], path: str = "/v1/process") -> dict[str, Any]:
    response = httpx.post(f"{url}{path}", json=body, timeout=60, trust_env=False)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    assert data["failed"] == 0 and data["total"] == len(data["chunks"]) > 3
    return data


def _assert_tiles_the_text(spans: list[tuple[int, int]]) -> None:
    """The spans cover the text end to end, in order, with no gap or overlap (overlap is 0 here)."""
    assert spans[0][0] == 0 and spans[-1][1] == len(TEXT)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


@pytest.mark.parametrize("path", ["/v1/process", "/process/"])
def test_chunks_are_spans_without_text_by_default(tiny_url: str, path: str) -> None:
    data = _process(tiny_url, _body(), path)
    assert all(set(chunk) == {"index", "start", "end"} for chunk in data["chunks"]), data["chunks"][0]
    assert [c["index"] for c in data["chunks"]] == list(range(len(data["chunks"])))
    _assert_tiles_the_text([(c["start"], c["end"]) for c in data["chunks"]])
    assert b'"text":' not in httpx.post(f"{tiny_url}{path}", json=_body(include_text=False), timeout=60).content


def test_include_text_echoes_each_chunk_as_its_span(tiny_url: str) -> None:
    data = _process(tiny_url, _body(include_text=True))
    chunks = data["chunks"]
    assert all(set(chunk) == {"index", "start", "end", "text"} for chunk in chunks)
    assert all(c["text"] == TEXT[c["start"] : c["end"]] for c in chunks)
    assert "".join(c["text"] for c in chunks) == TEXT
    assert any("🍜" in c["text"] for c in chunks)
    # The same chunks either way: asking for the texts changes nothing else.
    plain = _process(tiny_url, _body())
    assert [{k: c[k] for k in ("index", "start", "end")} for c in chunks] == plain["chunks"]


def test_include_text_that_is_not_a_boolean_is_a_422_naming_it(tiny_url: str) -> None:
    response = httpx.post(f"{tiny_url}/v1/process", json=_body(include_text="sometimes"), timeout=30)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "include_text"


def _results(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with (
        httpx.Client(timeout=60, trust_env=False) as client,
        connect_sse(client, "POST", f"{url}/v1/process/stream", json=body) as source,
    ):
        events = [(sse.event, json.loads(sse.data)) for sse in source.iter_sse()]
    assert events[-1][0] == "summary" and events[-1][1]["failed"] == 0
    return [data for kind, data in events if kind == "result"]


def test_stream_results_carry_text_only_when_asked(tiny_url: str) -> None:
    plain = _results(tiny_url, _body())
    assert plain and all("text" not in r for r in plain)
    with_text = _results(tiny_url, _body(include_text=True))
    assert sorted(r["index"] for r in with_text) == list(range(len(plain)))
    assert all(r["text"] == TEXT[r["start"] : r["end"]] for r in with_text)
    _assert_tiles_the_text(sorted((r["start"], r["end"]) for r in with_text))


def test_websocket_results_carry_text_only_when_asked(tiny_url: str) -> None:
    jobs = {"plain": _body(), "texts": _body(include_text=True), "bad": _body(include_text=[1])}
    messages: list[dict[str, Any]] = []
    with ws_connect(tiny_url.replace("http://", "ws://") + "/v1/ws", open_timeout=10) as ws:
        for job_id, body in jobs.items():
            ws.send(json.dumps({"job_id": job_id, **body}))
        # Bounded: each message waits at most 30 s, and the loop ends once both jobs are done and one refused.
        while sum(m["type"] in ("done", "error") for m in messages) < 3:
            messages.append(json.loads(ws.recv(timeout=30)))
    errors = [m for m in messages if m["type"] == "error"]
    assert len(errors) == 1 and errors[0]["error"]["message"].startswith("include_text:")
    results = {job: [m for m in messages if m["type"] == "result" and m["job_id"] == job] for job in ("plain", "texts")}
    assert results["plain"] and all("text" not in m for m in results["plain"])
    assert len(results["texts"]) == len(results["plain"])
    assert all(m["text"] == TEXT[m["start"] : m["end"]] for m in results["texts"])


def test_the_schema_documents_the_field_and_an_absent_text(tiny_url: str) -> None:
    schemas = httpx.get(f"{tiny_url}/openapi.json", timeout=30).json()["components"]["schemas"]
    field = schemas["ProcessRequest"]["properties"]["include_text"]
    assert field["type"] == "boolean" and field["default"] is False and "text[start:end]" in field["description"]
    chunk = schemas["ChunkInfo"]
    assert set(chunk["required"]) == {"index", "start", "end"}
    # Absent, never null: the schema offers no null for a client generator to expect.
    assert chunk["properties"]["text"]["type"] == "string" and "default" not in chunk["properties"]["text"]
