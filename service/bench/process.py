"""Bench scenario ``process``: one long text fanned out as N chunks to a fake remote with a fixed latency."""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx2 as httpx

from service.bench.procs import rss_bytes, spawned


def _one_request(client: httpx.Client, url: str, remote: str, chunks: int, chunk_size: int) -> float:
    body = {
        "text": "x" * (chunks * chunk_size),
        "chunking": "chars",
        "chunk_size": chunk_size,
        "api_urls": [f"{remote}/generic"],
        "timeout_s": 60,
    }
    start = time.perf_counter()
    response = client.post(f"{url}/v1/process", json=body)
    elapsed = time.perf_counter() - start
    data = response.json()
    if response.status_code != 200 or data["successful"] != chunks:
        raise SystemExit(f"bench process: unexpected answer {response.status_code}: {response.text[:300]}")
    return elapsed


def run_process_scenario(
    *,
    headers: dict[str, str] | None = None,
    chunks: int = 1000,
    latency_ms: float = 200.0,
    limits: tuple[int, ...] = (1000, 100),
    repeats: int = 20,
) -> dict[str, Any]:
    """For each per-host limit: time ``repeats`` requests of ``chunks`` chunks, and the server's RSS."""
    report: dict[str, Any] = {"chunks": chunks, "remote_latency_ms": latency_ms, "runs": []}
    with spawned(["fake-remote", "--latency-ms", str(latency_ms)], "/_stats") as (remote, _):
        for limit in limits:
            env = {
                "CHUNKSERVE_REMOTE_ALLOWLIST": "127.0.0.1",
                "CHUNKSERVE_REMOTE_PER_HOST_LIMIT": str(limit),
                "CHUNKSERVE_MAX_CHUNKS": str(max(chunks, 10_000)),
            }
            with (
                spawned(["serve"], "/ready", env=env) as (url, proc),
                httpx.Client(timeout=120, trust_env=False, headers=headers) as c,
            ):
                _one_request(c, url, remote, chunks, 10)  # warm connections and code paths
                rss_before = rss_bytes(proc.pid)
                times = [_one_request(c, url, remote, chunks, 10) for _ in range(repeats)]
                rss_after = rss_bytes(proc.pid)
            run = {
                "per_host_limit": limit,
                "expected_floor_s": round(latency_ms / 1000 * -(-chunks // limit), 3),
                "median_s": round(statistics.median(times), 3),
                "min_s": round(min(times), 3),
                "max_s": round(max(times), 3),
                "rss_mb_before": round(rss_before / 2**20, 1),
                "rss_mb_after": round(rss_after / 2**20, 1),
            }
            report["runs"].append(run)
            print(
                f"per-host limit {limit:>5}: {chunks} chunks x {latency_ms:.0f} ms remote -> "
                f"median {run['median_s']} s "
                f"(min {run['min_s']}, max {run['max_s']}; floor {run['expected_floor_s']} s); "
                f"server RSS {run['rss_mb_before']} -> {run['rss_mb_after']} MB over {repeats} requests"
            )
    return report


def _stream_once(client: httpx.Client, url: str, remote: str, chunks: int) -> tuple[float, float]:
    body = {
        "text": "x" * (chunks * 10),
        "chunking": "chars",
        "chunk_size": 10,
        "api_urls": [f"{remote}/generic"],
        "timeout_s": 60,
    }
    start = time.perf_counter()
    first = None
    results = 0
    with client.stream("POST", f"{url}/v1/process/stream", json=body) as response:
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "result":
                results += 1
                if first is None:
                    first = time.perf_counter() - start
    total = time.perf_counter() - start
    if first is None or results != chunks:
        raise SystemExit(f"bench stream: got {results} results of {chunks}")
    return first, total


def run_stream_scenario(
    *, headers: dict[str, str] | None = None, chunks: int = 100, latency_ms: float = 200.0, repeats: int = 10
) -> dict[str, Any]:
    """Time to the first ``result`` event and to the end of the stream, for one job of ``chunks`` chunks."""
    with (
        spawned(["fake-remote", "--latency-ms", str(latency_ms)], "/_stats") as (remote, _),
        spawned(["serve"], "/ready", env={"CHUNKSERVE_REMOTE_ALLOWLIST": "127.0.0.1"}) as (url, _),
        httpx.Client(timeout=120, trust_env=False, headers=headers) as client,
    ):
        _stream_once(client, url, remote, chunks)
        runs = [_stream_once(client, url, remote, chunks) for _ in range(repeats)]
    firsts = [f for f, _ in runs]
    totals = [t for _, t in runs]
    report = {
        "chunks": chunks,
        "remote_latency_ms": latency_ms,
        "first_result_ms_median": round(statistics.median(firsts) * 1000, 1),
        "stream_total_ms_median": round(statistics.median(totals) * 1000, 1),
        "first_result_over_remote_latency": round(statistics.median(firsts) * 1000 / latency_ms, 2),
    }
    print(
        f"stream: {chunks} chunks x {latency_ms:.0f} ms remote -> first result after "
        f"{report['first_result_ms_median']} ms, whole stream {report['stream_total_ms_median']} ms "
        f"(median of {repeats})"
    )
    return report
