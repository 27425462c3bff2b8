"""One bench run: every target through every load level, interleaved in rounds, with the figures of each phase.

For each level (a concurrency or an arrival rate) and each repeat, every target runs the identical phase in turn,
the order rotating each round, so machine drift (other jobs, thermal state) hits all targets alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from service.bench import scenarios as _builtin  # noqa: F401  (registers the built-in scenarios)
from service.bench.bare import bare_reference
from service.bench.figures import phase_figures, process_figures, summarize
from service.bench.load import Bounds, PhaseRun, closed_loop, new_client, open_loop, warm_up
from service.bench.procs import ProcessWatch, spawned
from service.bench.scenario import SCENARIOS, Scenario, Send, Workload
from service.bench.scrape import batch_figures, scrape
from service.bench.targets import LiveTarget, TargetSpec, started


@dataclass
class Plan:
    """What to measure."""

    scenario: str
    workload: Workload
    targets: list[TargetSpec]
    concurrency: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    bounds: Bounds = field(default_factory=lambda: Bounds(requests=100))
    repeats: int = 1
    baseline: str | None = None  # the name of the target every other is divided by
    raw_inputs: int = 0  # >0: also measure the in-process ceiling on that many inputs
    headers: dict[str, str] = field(default_factory=dict)
    server_pid: int | None = None  # the process of a URL target, when it runs here
    remote_latency_ms: float = 200.0
    remote: str | None = None  # a fake remote already running; None: start one when the scenario needs it
    spawn_env: dict[str, str] = field(default_factory=dict)
    per_host_limit: int | None = None  # spawned targets' remote_per_host_limit (and a job window as wide)
    progress: bool = True
    seed: int = 0


def _levels(plan: Plan) -> list[tuple[str, float]]:
    return [("closed", float(c)) for c in plan.concurrency] + [("open", r) for r in plan.rates]


async def _phase(target: LiveTarget, plan: Plan, send: Send, shape: str, level: float, seed: int) -> dict[str, Any]:
    connections = int(level) if shape == "closed" else 256
    bar = tqdm(
        total=plan.bounds.requests,
        desc=f"{target.name} {shape} {level:g}",
        unit="req",
        leave=False,
        disable=not plan.progress,
    )
    async with new_client(target.url, connections, plan.workload.timeout_s, target.headers) as client:
        warm = plan.bounds.warmup_for(connections if shape == "closed" else 4)
        await warm_up(client, send, warm, connections)
        before = await scrape(client) if target.chunkserve else None
        with ProcessWatch(target.pid) as watch:
            run: PhaseRun
            if shape == "closed":
                run = await closed_loop(client, send, int(level), plan.bounds, lambda: bar.update(1), first=warm)
            else:
                run = await open_loop(client, send, level, plan.bounds, lambda: bar.update(1), seed=seed, first=warm)
        after = await scrape(client) if before is not None else None
    bar.close()
    figures = phase_figures(run)
    if target.pid is not None:
        figures |= process_figures(watch.cpu_s, watch.peak_rss, run.elapsed_s, figures["remote_calls"])
    if before is not None and after is not None:
        figures["batching"] = batch_figures(before, after, plan.workload.model)
    return figures


def _ratios(
    servers: dict[str, dict[str, dict[str, Any]]], names: list[str], baseline: str | None
) -> list[dict[str, Any]]:
    """inputs/s and p50 of each pair at each level (a / b); the baseline, when given, is always b."""
    pairs = [(a, baseline) for a in names if a != baseline] if baseline else list(itertools.combinations(names, 2))
    out = []
    for a, b in pairs:
        for level, fig_a in servers[a].items():
            fig_b = servers[b].get(level)
            if not fig_b or not fig_b["inputs_per_s"]:
                continue
            p50 = (fig_a["p50_ms"] / fig_b["p50_ms"]) if fig_a["p50_ms"] and fig_b["p50_ms"] else None
            out.append(
                {
                    "a": a,
                    "b": b,
                    "level": level,
                    "inputs_per_s": round(fig_a["inputs_per_s"] / fig_b["inputs_per_s"], 3),
                    "p50": None if p50 is None else round(p50, 3),
                }
            )
    return out


def level_key(shape: str, level: float) -> str:
    """How results name a level: ``c8`` (closed loop, 8 clients) or ``r20`` (open loop, 20 requests/s)."""
    return f"c{int(level)}" if shape == "closed" else f"r{level:g}"


def run_plan(plan: Plan) -> dict[str, Any]:
    """Start the targets (and a fake remote when the scenario calls one), measure, and return the run's results.

    Raises:
        SystemExit: a server did not start, or the scenario cannot run against a target.
    """
    scenario: Scenario = SCENARIOS[plan.scenario]
    phases: dict[str, dict[str, list[dict[str, Any]]]] = {t.name: {} for t in plan.targets}
    result: dict[str, Any] = {"scenario": plan.scenario, "model": plan.workload.model}
    with contextlib.ExitStack() as stack:
        env = dict(plan.spawn_env) | limit_env(plan.per_host_limit)
        workload = plan.workload
        if scenario.needs_remote:
            remote = plan.remote
            if remote is None:
                latency = ["--latency-ms", str(plan.remote_latency_ms)]
                remote, _ = stack.enter_context(spawned(["fake-remote", *latency], "/_stats"))
            workload = Workload(**{**workload.__dict__, "remote": remote})
            env |= {
                "CHUNKSERVE_REMOTE_ALLOWLIST": "127.0.0.1",
                "CHUNKSERVE_MAX_CHUNKS": str(max(10_000, workload.chunks)),
            }
        live = [
            stack.enter_context(started(spec, env=env, headers=plan.headers, pid=plan.server_pid))
            for spec in plan.targets
        ]
        if scenario.chunkserve_only and (other := [t.name for t in live if not t.chunkserve]):
            raise SystemExit(f"bench: scenario {plan.scenario!r} needs chunkserve's API; not chunkserve: {other}")
        if plan.raw_inputs:
            from service.bench.raw import load_and_measure

            result["raw"] = load_and_measure(workload.model, workload.texts[: plan.raw_inputs])
        send = scenario.build(workload)
        for (shape, level), repeat in itertools.product(_levels(plan), range(plan.repeats)):
            order = live[repeat % len(live) :] + live[: repeat % len(live)]
            for target in order:
                figures = asyncio.run(_phase(target, plan, send, shape, level, plan.seed + repeat))
                phases[target.name].setdefault(level_key(shape, level), []).append(figures)
        if plan.scenario == "fanout" and workload.remote is not None:
            limit = _per_host_limit(plan)
            repeats = max(3, plan.bounds.requests or 5)
            result["bare_client"] = bare_reference(f"{workload.remote}/generic", workload.chunks, limit, repeats)
    servers = {name: {key: summarize(runs) for key, runs in levels.items()} for name, levels in phases.items()}
    names = [t.name for t in plan.targets]
    result |= {"targets": names, "baseline": plan.baseline, "repeats": plan.repeats, "servers": servers}
    result["raw_phases"] = phases
    result["ratios"] = _ratios(servers, names, plan.baseline) if len(names) > 1 else []
    if "raw" in result:
        ceiling = result["raw"]["ceiling_inputs_per_s"]
        result["over_ceiling"] = {
            name: {key: round(fig["inputs_per_s"] / ceiling, 3) for key, fig in levels.items()}
            for name, levels in servers.items()
        }
    if "bare_client" in result:
        result["fanout_cost"] = _fanout_cost(servers, result["bare_client"])
    return result


def limit_env(per_host_limit: int | None) -> dict[str, str]:
    """The spawned servers' environment for ``--per-host-limit`` (a target's own settings still win)."""
    if per_host_limit is None:
        return {}
    # A job runs at most job_window calls at once: a limit wider than the window would never be reached.
    window = max(per_host_limit, 256)
    return {"CHUNKSERVE_REMOTE_PER_HOST_LIMIT": str(per_host_limit), "CHUNKSERVE_JOB_WINDOW": str(window)}


def _per_host_limit(plan: Plan) -> int:
    """The limit the first target calls the remote with: its own setting, else --per-host-limit, else the default."""
    own = dict(plan.targets[0].settings).get("remote_per_host_limit")
    if own is not None:
        return int(own)
    return plan.per_host_limit if plan.per_host_limit is not None else 64


def _fanout_cost(servers: dict[str, dict[str, dict[str, Any]]], bare: dict[str, Any]) -> dict[str, Any]:
    """Server CPU per remote call against the bare client's, per target at its first level."""
    out: dict[str, Any] = {"bare_cpu_us_per_call": bare["cpu_us_per_call"], "bare_round_s": bare["median_round_s"]}
    for name, levels in servers.items():
        first = next(iter(levels.values()))
        per_call = first.get("server_cpu_us_per_remote_call")
        p50_s = None if first["p50_ms"] is None else first["p50_ms"] / 1000
        out[name] = {
            "server_cpu_us_per_call": per_call,
            "over_bare": round(per_call / bare["cpu_us_per_call"], 2) if per_call and bare["cpu_us_per_call"] else None,
            "p50_request_s": None if p50_s is None else round(p50_s, 4),
            # The bound: a request of N calls against the bare client's round of the same N calls.
            "wall_over_bare": round(p50_s / bare["median_round_s"], 2) if p50_s and bare["median_round_s"] else None,
        }
    return out
