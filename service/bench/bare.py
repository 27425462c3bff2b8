"""The fanout scenario's reference: the same remote calls fired by a bare client in a child process, no server.

``python -m service.bench.bare --url URL --calls N --limit L --repeats R`` sends R rounds of N ``POST URL
{"text": ...}`` calls, L at a time, and prints one JSON object: the client used, the wall time of each round and
the CPU time the process spent on the measured rounds. aiohttp when installed, else httpx2 with one pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.util import find_spec
from typing import Any

_Round = Callable[[], Awaitable[None]]


async def _rounds(make: _Round, repeats: int) -> tuple[list[float], float]:
    await make()  # warm connections, outside the measurement
    cpu0 = time.process_time()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await make()
        times.append(time.perf_counter() - start)
    return times, time.process_time() - cpu0


async def _with_aiohttp(url: str, calls: int, limit: int, repeats: int) -> tuple[list[float], float]:
    import aiohttp

    gate = asyncio.Semaphore(limit)
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(i: int) -> None:
            async with gate, session.post(url, json={"text": f"{i:010d}"}) as response:
                await response.read()
                response.raise_for_status()

        async def one_round() -> None:
            await asyncio.gather(*(call(i) for i in range(calls)))

        return await _rounds(one_round, repeats)


async def _with_httpx(url: str, calls: int, limit: int, repeats: int) -> tuple[list[float], float]:
    import httpx2 as httpx

    gate = asyncio.Semaphore(limit)
    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=60) as client:

        async def call(i: int) -> None:
            async with gate:
                (await client.post(url, json={"text": f"{i:010d}"})).raise_for_status()

        async def one_round() -> None:
            await asyncio.gather(*(call(i) for i in range(calls)))

        return await _rounds(one_round, repeats)


def main() -> None:
    """Fire the rounds and print the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m service.bench.bare", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--client", choices=["auto", "aiohttp", "httpx"], default="auto")
    args = parser.parse_args()
    client = args.client
    if client == "auto":
        client = "aiohttp" if find_spec("aiohttp") is not None else "httpx"
    run = _with_aiohttp if client == "aiohttp" else _with_httpx
    times, cpu = asyncio.run(run(args.url, args.calls, args.limit, args.repeats))
    print(json.dumps({"client": client, "calls": args.calls, "limit": args.limit, "round_s": times, "cpu_s": cpu}))


def bare_reference(url: str, calls: int, limit: int, repeats: int) -> dict[str, Any]:
    """Run the child and summarise: median wall time per round, CPU microseconds per call.

    Raises:
        SystemExit: the child failed.
    """
    command = [sys.executable, "-m", "service.bench.bare", "--url", url, "--calls", str(calls)]
    command += ["--limit", str(limit), "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: the bare-client reference failed:\n{done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    rounds = sorted(report["round_s"])
    report["median_round_s"] = round(rounds[(len(rounds) - 1) // 2], 4)
    report["cpu_us_per_call"] = round(report["cpu_s"] / (calls * repeats) * 1e6, 1)
    return report


if __name__ == "__main__":
    main()
