"""Sweeps: chunkserve started once per combination of settings, ranked by an objective; ``chunkserve tune``."""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shlex
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from service.bench.options import plan_from_args
from service.bench.runner import run_plan
from service.bench.targets import TargetSpec, parse_settings, settings_env
from service.config import Settings

_OBJECTIVE = re.compile(r"^throughput(?:@p99<=(?P<bound>[0-9.]+))?$")


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["max_batch_size=1,8", "max_wait_ms=0,2"]`` → ``{"max_batch_size": ["1", "8"], ...}``, values checked.

    Raises:
        SystemExit: an item is not NAME=V1,V2, a name is no chunkserve setting, or a value is invalid for it.
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise SystemExit(f"chunkserve bench --sweep: {item!r} is not NAME=V1,V2,...")
        if name not in Settings.model_fields:
            raise SystemExit(f"chunkserve bench --sweep: {name!r} is not a chunkserve setting")
        grid[name] = [v.strip() for v in values.split(",") if v.strip()]
        for value in grid[name]:
            try:
                Settings(**{name: value})  # type: ignore[arg-type]
            except ValidationError as exc:
                raise SystemExit(f"chunkserve bench --sweep: {name}={value}: {exc.errors()[0]['msg']}") from None
    return grid


def parse_objective(text: str) -> float | None:
    """The p99 bound in ms of ``throughput@p99<=MS`` (None for plain ``throughput``).

    Raises:
        SystemExit: the objective is neither form.
    """
    match = _OBJECTIVE.match(text.replace(" ", ""))
    if match is None:
        raise SystemExit(f"chunkserve bench --objective: {text!r} is not 'throughput' or 'throughput@p99<=MS'")
    return float(match["bound"]) if match["bound"] else None


def score(levels: dict[str, dict[str, Any]], p99_bound_ms: float | None) -> tuple[float | None, str | None]:
    """Best inputs/s over the levels whose p99 meets the bound (and had no errors); the level it came from."""
    best: tuple[float | None, str | None] = (None, None)
    for key, fig in levels.items():
        if fig["errors"] or fig["p99_ms"] is None or (p99_bound_ms is not None and fig["p99_ms"] > p99_bound_ms):
            continue
        if best[0] is None or fig["inputs_per_s"] > best[0]:
            best = (fig["inputs_per_s"], key)
    return best


def serve_command(settings: dict[str, str]) -> str:
    """``chunkserve serve --name value ...`` for these settings (booleans as --name / --no-name)."""
    words = ["chunkserve", "serve"]
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if Settings.model_fields[name].annotation is bool:
            words.append(flag if value.lower() in ("1", "true", "yes", "on") else "--no-" + flag[2:])
        else:
            words += [flag, value]
    return shlex.join(words)


def run_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Every combination of ``--sweep`` on top of ``--spawn``'s settings, one spawned server at a time."""
    grid = parse_grid(args.sweep)
    bound = parse_objective(args.objective)
    base = dict(parse_settings(args.spawn or ""))
    plan = plan_from_args(argparse.Namespace(**{**vars(args), "spawn": args.spawn or "", "vs": [], "baseline": None}))
    combos = []
    for values in itertools.product(*grid.values()):
        settings = {**base, **dict(zip(grid, values, strict=True))}
        spec = TargetSpec("spawn", settings=tuple(settings.items()))
        run = run_plan(replace(plan, targets=[spec], baseline=None))
        levels = run["servers"][spec.name]
        value, level = score(levels, bound)
        combos.append({"settings": settings, "levels": levels, "score": value, "score_level": level})
        print(f"sweep {spec.name}: {value if value is not None else 'fails the objective'} inputs/s", flush=True)
    ranked = sorted(combos, key=lambda c: -1.0 if c["score"] is None else c["score"], reverse=True)
    for rank, combo in enumerate(ranked, 1):
        combo["rank"] = rank if combo["score"] is not None else None
    result: dict[str, Any] = {
        "kind": "sweep",
        "scenario": args.scenario,
        "model": args.model,
        "grid": grid,
        "objective": args.objective,
        "combinations": ranked,
        "winner": None,
    }
    if ranked and ranked[0]["score"] is not None:
        settings = ranked[0]["settings"]
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in settings_env(tuple(settings.items())).items())
        result["winner"] = {
            "settings": settings,
            "score": ranked[0]["score"],
            "command": serve_command(settings),
            "env": env,
        }
    return result


def run_tune_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """``chunkserve tune``: the embeddings sweep of its flags, on the packaged model or ``--model-path``."""
    if args.model_path:
        os.environ["CHUNKSERVE_MODELS"] = args.model_path  # the servers started inherit it
        args.model = args.model_path.partition("=")[0]
    from service.bench.options import add_bench_arguments

    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    bench = parser.parse_args([])  # every bench default, then tune's own values over them
    for name, value in vars(args).items():
        if hasattr(bench, name):
            setattr(bench, name, value)
    bench.scenario, bench.spawn = "embeddings", ""
    return run_sweep(bench)
