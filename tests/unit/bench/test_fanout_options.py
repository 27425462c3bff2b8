"""The fanout bench's per-host limit (one flag for the issue's measurement) and its wall-time ratio."""

from __future__ import annotations

from typing import Any

from service.bench.options import plan_from_args
from service.bench.report import fanout_table
from service.bench.runner import _fanout_cost, _per_host_limit, limit_env
from service.cli import build_parser


def _plan(*flags: str) -> Any:
    args = build_parser().parse_args(["bench", "--scenario", "fanout", "--chunks", "1000", *flags])
    return plan_from_args(args)


def test_the_per_host_limit_flag_reaches_the_plan_and_the_bare_client() -> None:
    plan = _plan("--spawn", "--per-host-limit", "1000")
    assert (plan.per_host_limit, _per_host_limit(plan)) == (1000, 1000)
    assert _per_host_limit(_plan("--spawn")) == 64  # the server's default
    # A target's own setting is what it runs with, so the bare client follows it.
    assert _per_host_limit(_plan("--spawn", "remote_per_host_limit=8", "--per-host-limit", "1000")) == 8


def test_a_spawned_server_gets_the_limit_and_a_window_as_wide() -> None:
    assert limit_env(1000) == {"CHUNKSERVE_REMOTE_PER_HOST_LIMIT": "1000", "CHUNKSERVE_JOB_WINDOW": "1000"}
    assert limit_env(8) == {"CHUNKSERVE_REMOTE_PER_HOST_LIMIT": "8", "CHUNKSERVE_JOB_WINDOW": "256"}  # never narrower
    assert limit_env(None) == {}


def test_fanout_cost_states_cpu_and_wall_against_the_bare_client() -> None:
    servers = {"chunkserve": {"c1": {"server_cpu_us_per_remote_call": 300.0, "p50_ms": 330.0}}}
    bare = {"client": "aiohttp", "cpu_us_per_call": 200.0, "median_round_s": 0.3}
    cost = _fanout_cost(servers, bare)
    assert cost["chunkserve"] == {
        "server_cpu_us_per_call": 300.0,
        "over_bare": 1.5,
        "p50_request_s": 0.33,
        "wall_over_bare": 1.1,
    }
    head, rows = fanout_table({"fanout_cost": cost, "bare_client": bare, "targets": ["chunkserve"]})
    assert head[-1] == "wall vs bare"
    assert rows[1][-1] == "1.10" and rows[1][2] == "1.50"
