"""The built-in bench scenarios: embeddings, classify, process, stream and fanout."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx

from service.bench.scenario import Sample, Scenario, Send, Workload, error_kind, exception_kind, register


def _inputs_for(work: Workload, i: int) -> list[str]:
    n = len(work.texts)
    return [work.texts[(i * work.inputs_per_request + k) % n] for k in range(work.inputs_per_request)]


async def _post_json(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Sample | tuple[float, Any]:
    """POST ``body`` to ``path``: the seconds it took and the answer's JSON, or the failed ``Sample`` (no answer, or
    not a 200) that the request is to count as."""
    start = time.perf_counter()
    try:
        response = await client.post(path, json=body)
    except httpx.HTTPError as exc:
        return Sample(time.perf_counter() - start, error=exception_kind(exc))
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        return Sample(elapsed, error=error_kind(response.status_code))
    return elapsed, response.json()


def _openai_style(path: str) -> Callable[[Workload], Send]:
    """``POST path`` with ``{"input": [...], "model": ...}``; an answer must hold one item per input."""

    def build(work: Workload) -> Send:
        async def send(client: httpx.AsyncClient, i: int) -> Sample:
            inputs = _inputs_for(work, i)
            body: dict[str, Any] = {"model": work.model, "input": inputs[0] if len(inputs) == 1 else inputs}
            answer = await _post_json(client, path, body)
            if isinstance(answer, Sample):
                return answer
            elapsed, data = answer
            if len(data.get("data", ())) != len(inputs):
                return Sample(elapsed, error="wrong_count")
            tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
            return Sample(elapsed, inputs=len(inputs), tokens=tokens)

        return send

    return build


def _long_text(work: Workload, i: int) -> str:
    """About ``text_chars`` characters of corpus text, starting at a different text for each request."""
    parts: list[str] = []
    size = 0
    k = i
    while size < work.text_chars:
        text = work.texts[k % len(work.texts)]
        parts.append(text)
        size += len(text) + 1
        k += 1
    return " ".join(parts)[: work.text_chars]


def _process_targets(work: Workload) -> list[dict[str, Any]]:
    local = {"model": work.model}
    remote = {"url": f"{work.remote}/generic"}
    return {"local": [local], "remote": [remote], "mixed": [local, remote]}[work.targets]


def _process_body(work: Workload, i: int) -> dict[str, Any]:
    return {
        "text": _long_text(work, i),
        "chunking": "sentences",
        "chunk_size": work.chunk_size,
        "targets": _process_targets(work),
        "timeout_s": work.timeout_s,
    }


def _fanout_body(work: Workload) -> dict[str, Any]:
    # Ten-character chunks: the text is cut into exactly ``chunks`` calls to the remote.
    return {
        "text": "x" * (work.chunks * 10),
        "chunking": "chars",
        "chunk_size": 10,
        "api_urls": [f"{work.remote}/generic"],
        "timeout_s": work.timeout_s,
    }


def _process_send(
    make_body: Callable[[Workload, int], dict[str, Any]], remote_share: Callable[[Workload], float]
) -> Callable[[Workload], Send]:
    def build(work: Workload) -> Send:
        async def send(client: httpx.AsyncClient, i: int) -> Sample:
            answer = await _post_json(client, "/v1/process", make_body(work, i))
            if isinstance(answer, Sample):
                return answer
            elapsed, data = answer
            if data["failed"]:
                return Sample(elapsed, inputs=data["successful"], error="chunk_failed")
            calls = round(data["total"] * remote_share(work))
            return Sample(elapsed, inputs=data["successful"], remote_calls=calls)

        return send

    return build


def _remote_share(work: Workload) -> float:
    return {"local": 0.0, "remote": 1.0, "mixed": 0.5}[work.targets]


async def _read_stream(response: httpx.Response, start: float) -> tuple[list[float], str | None]:
    """Arrival times of the ``result`` events, and the error event's type if one came."""
    arrivals: list[float] = []
    event = None
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == "result":
            arrivals.append(time.perf_counter() - start)
        elif line.startswith("data:") and event == "error":
            return arrivals, "stream_error"
    return arrivals, None


def _build_stream(work: Workload) -> Send:
    async def send(client: httpx.AsyncClient, i: int) -> Sample:
        start = time.perf_counter()
        try:
            async with client.stream("POST", "/v1/process/stream", json=_fanout_body(work)) as response:
                if response.status_code != 200:
                    await response.aread()
                    return Sample(time.perf_counter() - start, error=error_kind(response.status_code))
                arrivals, failure = await _read_stream(response, start)
        except httpx.HTTPError as exc:
            return Sample(time.perf_counter() - start, error=exception_kind(exc))
        elapsed = time.perf_counter() - start
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        error = failure or (None if len(arrivals) == work.chunks else "wrong_count")
        first = arrivals[0] if arrivals else None
        return Sample(
            elapsed, inputs=len(arrivals), error=error, first_s=first, gaps_s=gaps, remote_calls=len(arrivals)
        )

    return send


register(
    Scenario(
        "embeddings",
        "POST /v1/embeddings (OpenAI-compatible), --inputs-per-request texts each.",
        _openai_style("/v1/embeddings"),
    )
)
register(
    Scenario(
        "classify",
        "POST /v1/classify, --inputs-per-request texts each (a classification model).",
        _openai_style("/v1/classify"),
        model_task="classification",
    )
)
register(
    Scenario(
        "process",
        "POST /v1/process: long texts (--text-chars) chunked by sentences to --targets local, remote or mixed.",
        _process_send(_process_body, _remote_share),
        needs_remote=True,
        chunkserve_only=True,
    )
)
register(
    Scenario(
        "stream",
        "POST /v1/process/stream: --chunks remote calls; time to the first result and between results.",
        _build_stream,
        needs_remote=True,
        chunkserve_only=True,
    )
)
register(
    Scenario(
        "fanout",
        "POST /v1/process: --chunks remote calls to the fake remote, against a bare client firing the same calls.",
        _process_send(lambda work, _i: _fanout_body(work), lambda _work: 1.0),
        needs_remote=True,
        chunkserve_only=True,
    )
)
