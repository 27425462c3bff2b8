"""Outbound pools: connections spread over small pools (``ShardedTransport``) against one plain httpx2 pool, both
through the guarded httpx2 client of ``service/bench/stacks/``.

Run: ``python -m service.bench.pools --calls 1000 --rounds 5 --out bench/results/pools.json``. It starts the fake
remote (200 ms latency) as a child process and sends bursts of ``calls`` concurrent POSTs through each client in
turn, measuring wall time and this process's CPU time per burst (the fake's CPU is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from service.bench.procs import spawned
from service.bench.stacks.transport import POOL_SHARD_SIZE, make_guarded_client
from service.outbound.guard import OutboundPolicy


async def _burst(client: httpx.AsyncClient, url: str, calls: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    responses = await asyncio.gather(*(client.post(url, json={"text": f"text {i}"}) for i in range(calls)))
    if any(r.status_code != 200 for r in responses):
        raise SystemExit("bench: a call failed")
    return time.perf_counter() - wall, time.process_time() - cpu


async def _measure(base: str, calls: int, rounds: int) -> dict[str, Any]:
    policy = OutboundPolicy.from_allowlist(["127.0.0.0/8"])
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=calls)
    clients = {
        f"sharded (pools of {POOL_SHARD_SIZE})": make_guarded_client(
            policy, timeout=60, limits=limits, concurrency=calls
        ),
        "one pool": make_guarded_client(policy, timeout=60, limits=limits, concurrency=1),
    }
    url = f"{base}/generic?latency_ms=200"
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    try:
        for client in clients.values():
            await _burst(client, url, calls)  # open the connections and warm the code paths
        for _ in range(rounds):
            for name, client in clients.items():  # alternated, so that drift in the machine's load hits both
                samples[name].append(await _burst(client, url, calls))
    finally:
        for client in clients.values():
            await client.aclose()
    return {
        name: {
            "wall_s_median": round(statistics.median(w for w, _ in runs), 3),
            "cpu_s_median": round(statistics.median(c for _, c in runs), 3),
            "wall_s": [round(w, 3) for w, _ in runs],
            "cpu_s": [round(c, 3) for _, c in runs],
        }
        for name, runs in samples.items()
    }


def main() -> None:
    """Measure and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with spawned(["fake-remote"], "/_stats") as (base, _):
        results = asyncio.run(_measure(base, args.calls, args.rounds))
    sharded, plain = (results[k]["cpu_s_median"] for k in results)
    report = {
        "command": f"python -m service.bench.pools --calls {args.calls} --rounds {args.rounds}",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared, noisy)",
        "httpx2": httpx.__version__,
        "calls_per_burst": args.calls,
        "remote_latency_ms": 200,
        "results": results,
        "cpu_ratio_one_pool_over_sharded": round(plain / sharded, 2),
    }
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
