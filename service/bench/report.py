"""The bench outputs: a summary table on the terminal, ``results.json``, ``report.md`` and (optionally) PNG plots."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.bench.environment import describe

Table = tuple[list[str], list[list[str]]]


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _spread(fig: dict[str, Any], key: str) -> str:
    spread = fig.get("spread", {}).get(key)
    if fig.get("repeats", 1) > 1 and spread:  # median of the repeats (min-max)
        return f"{_num(spread['median'])} ({_num(spread['min'])}-{_num(spread['max'])})"
    return _num(fig.get(key))


def _errors(fig: dict[str, Any]) -> str:
    if not fig["errors"]:
        return "0"
    return str(fig["errors"]) + " (" + ", ".join(f"{k} {v}" for k, v in fig["errors_by_kind"].items()) + ")"


def phase_table(run: dict[str, Any]) -> Table:
    """One row per level and server: throughput, latency, errors, batching and the server process."""
    head = ["level", "server", "req/s", "inputs/s", "tokens/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "503"]
    head += ["mean batch", "padding", "wait/compute ms", "CPU cores", "RSS MB"]
    figures = [f for levels in run["servers"].values() for f in levels.values()]
    stream = any("first_result_p50_ms" in f for f in figures)
    if stream:
        head += ["first result p50 ms", "between results p50 ms"]
    remote = any((f.get("batching") or {}).get("remote_outcomes") for f in figures)
    if remote:
        head += ["remote calls by outcome"]
    rows = []
    levels = list(next(iter(run["servers"].values())).keys())
    for level in levels:
        for name in run["targets"]:
            fig = run["servers"][name].get(level)
            if fig is None:
                continue
            batching = fig.get("batching") or {}
            wait = batching.get("queue_wait_ms_mean")
            compute = batching.get("compute_ms_mean")
            row = [level, name, _num(fig["requests_per_s"]), _spread(fig, "inputs_per_s"), _num(fig["tokens_per_s"], 0)]
            row += [_spread(fig, "p50_ms"), _num(fig["p90_ms"]), _spread(fig, "p99_ms"), _num(fig["max_ms"])]
            row += [_errors(fig), str(fig["shed_503"]), _num(batching.get("mean_batch_size"), 2)]
            row += [
                _num(batching.get("padding_share"), 2),
                f"{_num(wait, 2)} / {_num(compute, 2)}" if batching else "-",
            ]
            row += [_num(fig.get("server_cpu_cores"), 2), _num(fig.get("server_peak_rss_mb"), 0)]
            if stream:
                row += [_num(fig.get("first_result_p50_ms")), _num(fig.get("between_results_p50_ms"), 2)]
            if remote:
                outcomes = batching.get("remote_outcomes") or {}
                row.append(", ".join(f"{k} {v}" for k, v in outcomes.items()) or "-")
            rows.append(row)
    return head, rows


def ratio_table(run: dict[str, Any]) -> Table:
    """a / b per level: inputs/s and p50."""
    rows = [[r["level"], f"{r['a']} / {r['b']}", f"{r['inputs_per_s']:.2f}x", _num(r["p50"], 2)] for r in run["ratios"]]
    return ["level", "servers", "inputs/s ratio", "p50 ratio"], rows


def sweep_table(run: dict[str, Any]) -> Table:
    """The combinations, best first."""
    rows = []
    for combo in run["combinations"]:
        level = combo["score_level"]
        p99 = combo["levels"][level]["p99_ms"] if level else None
        settings = " ".join(f"{k}={v}" for k, v in combo["settings"].items())
        rows.append([_num(combo["rank"]), settings, _num(combo["score"]), level or "-", _num(p99)])
    return ["rank", "settings", "inputs/s", "at level", "p99 ms"], rows


def fanout_table(run: dict[str, Any]) -> Table:
    """Server CPU per remote call against the bare client's."""
    cost = run["fanout_cost"]
    rows = [
        [
            "bare client (" + run["bare_client"]["client"] + ")",
            _num(cost["bare_cpu_us_per_call"]),
            "1.00",
            _num(cost["bare_round_s"], 3),
            "1.00",
        ]
    ]
    for name in run["targets"]:
        c = cost[name]
        wall = c.get("wall_over_bare")
        rows.append(
            [
                name,
                _num(c["server_cpu_us_per_call"]),
                _num(c["over_bare"], 2),
                _num(c["p50_request_s"], 3),
                "-" if wall is None else _num(wall, 2),
            ]
        )
    head = ["client", "CPU µs per remote call", "CPU vs bare", "s per request of all calls (p50)", "wall vs bare"]
    return head, rows


def _sections(run: dict[str, Any]) -> Iterator[tuple[str, Table | str]]:
    if run.get("kind") == "sweep":
        yield "sweep", sweep_table(run)
        if run["winner"]:
            yield "winner", f"`{run['winner']['command']}` ({run['winner']['score']} inputs/s)"
        return
    if "raw" in run:
        raw = run["raw"]
        yield (
            "in-process ceiling",
            (
                f"batch-1 p50 {raw['batch1_p50_ms']} ms; arrival order {raw['ceiling_inputs_per_s']} inputs/s "
                f"(batch {raw['best_arrival_batch_size']}); length-sorted {raw['best_sorted_inputs_per_s']} inputs/s"
            ),
        )
    yield "figures", phase_table(run)
    if run["ratios"]:
        yield "ratios", ratio_table(run)
    if "over_ceiling" in run:
        rows = [[name, key, f"{v:.2f}x"] for name, levels in run["over_ceiling"].items() for key, v in levels.items()]
        yield "over the in-process ceiling (arrival order)", (["server", "level", "ratio"], rows)
    if "fanout_cost" in run:
        yield "fan-out cost", fanout_table(run)


def _text(table: Table) -> str:
    head, rows = table
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=False)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in [head, *rows]]
    return "\n".join(lines)


def _markdown(table: Table) -> str:
    head, rows = table
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summary_text(results: dict[str, Any]) -> str:
    """The terminal summary of every run."""
    out = [f"\n{describe(results['environment'])}"]
    for name, run in results["runs"].items():
        out.append(f"\n== {name} ({run.get('scenario', '')}, model {run.get('model', '-')}) ==")
        for title, body in _sections(run):
            out.append(f"-- {title}")
            out.append(body if isinstance(body, str) else _text(body))
    return "\n".join(out)


def markdown(results: dict[str, Any], plots: list[Path]) -> str:
    """``report.md``: the command, the machine, every table, the plots."""
    env = results["environment"]
    lines = ["# chunkserve bench report", "", f"```\n{results['command']}\n```", ""]
    lines += [
        f"Machine: {describe(env)}; {env['platform']}, Python {env['python']}, torch {env['libraries']['torch']}."
    ]
    lines += [f"Finished {results['finished_at']}.", ""]
    for name, run in results["runs"].items():
        lines += [f"## {name}", ""]
        for title, body in _sections(run):
            lines += [f"**{title}**", "", body if isinstance(body, str) else _markdown(body), ""]
        for plot in plots:
            if plot.stem.startswith(f"{name}-"):
                lines += [f"![{plot.stem}]({plot.name})", ""]
    return "\n".join(lines)


def write_outputs(results: dict[str, Any], out: Path, *, plots: bool) -> list[Path]:
    """``results.json`` and ``report.md`` (and the PNGs, when matplotlib is installed) under ``out``.

    ``out`` ending in ``.json`` names the results file; the report and plots go next to it.
    """
    folder, json_path = (out.parent, out) if out.suffix == ".json" else (out, out / "results.json")
    folder.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2))
    written = [json_path]
    images: list[Path] = []
    if plots:
        from service.bench.plots import write_plots

        images = write_plots(results, folder)
    report = folder / (f"{json_path.stem}.md" if out.suffix == ".json" else "report.md")
    report.write_text(markdown(results, images))
    return [*written, report, *images]
