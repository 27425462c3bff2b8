"""PNG plots of a bench run (matplotlib, the optional ``plots`` extra): none, and no error, without it.

Per run: throughput vs load per server, latency percentiles vs load, the batch size histogram of each chunkserve
server at its highest load; per sweep: a heat map of the objective over the first two settings swept.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any


def available() -> bool:
    """Whether matplotlib is installed."""
    return find_spec("matplotlib") is not None


def _level_value(key: str) -> float:
    return float(key[1:])


def _by_shape(levels: dict[str, Any], shape: str) -> list[tuple[float, dict[str, Any]]]:
    prefix = "c" if shape == "closed" else "r"
    return sorted((_level_value(k), v) for k, v in levels.items() if k.startswith(prefix))


def _load_plots(plt: Any, name: str, run: dict[str, Any], folder: Path) -> list[Path]:
    written = []
    for shape, axis in (("closed", "concurrency (clients)"), ("open", "arrival rate (requests/s)")):
        series = {server: _by_shape(levels, shape) for server, levels in run["servers"].items()}
        if not any(series.values()):
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for server, points in series.items():
            ax.plot([x for x, _ in points], [f["inputs_per_s"] for _, f in points], marker="o", label=server)
        if "raw" in run:
            ax.axhline(run["raw"]["ceiling_inputs_per_s"], linestyle="--", color="grey", label="in-process ceiling")
        ax.set(
            xlabel=axis, ylabel="inputs/s", title=f"{name}: throughput", xscale="log" if shape == "closed" else "linear"
        )
        ax.legend()
        path = folder / f"{name}-throughput-{shape}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for server, points in series.items():
            xs = [x for x, _ in points]
            for key, style in (("p50_ms", "-"), ("p99_ms", ":")):
                ax.plot(xs, [f[key] for _, f in points], style, marker="o", label=f"{server} {key[:3]}")
        ax.set(xlabel=axis, ylabel="latency (ms)", title=f"{name}: latency percentiles", yscale="log")
        ax.legend(fontsize="small")
        path = folder / f"{name}-latency-{shape}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _batch_plot(plt: Any, name: str, run: dict[str, Any], folder: Path) -> list[Path]:
    hists = {}
    for server, levels in run["servers"].items():
        top = _by_shape(levels, "closed") or _by_shape(levels, "open")
        if top and (counts := (top[-1][1].get("batching") or {}).get("batch_size_counts")):
            hists[server] = counts
    if not hists:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / len(hists)
    labels = sorted({b for counts in hists.values() for b in counts}, key=lambda b: float(b.removeprefix("<=")))
    for i, (server, counts) in enumerate(hists.items()):
        ax.bar([j + i * width for j in range(len(labels))], [counts.get(b, 0) for b in labels], width, label=server)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels)
    ax.set(xlabel="batch size (bucket)", ylabel="batches", title=f"{name}: batch sizes at the highest load")
    ax.legend()
    path = folder / f"{name}-batch-sizes.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return [path]


def _sweep_plot(plt: Any, name: str, run: dict[str, Any], folder: Path) -> list[Path]:
    keys = list(run["grid"])
    x_key = keys[0]
    y_key = keys[1] if len(keys) > 1 else None
    xs = run["grid"][x_key]
    ys = run["grid"][y_key] if y_key else [""]
    grid = [[0.0 for _ in xs] for _ in ys]  # best score over the other settings
    for combo in run["combinations"]:
        i = ys.index(combo["settings"][y_key]) if y_key else 0
        j = xs.index(combo["settings"][x_key])
        grid[i][j] = max(grid[i][j], combo["score"] or 0.0)
    fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 3, 0.8 * len(ys) + 2.5))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="white")
    ax.set(xlabel=x_key, ylabel=y_key or "", title=f"{name}: inputs/s ({run['objective']})")
    fig.colorbar(image, ax=ax)
    path = folder / f"{name}-heatmap.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return [path]


def write_plots(results: dict[str, Any], folder: Path) -> list[Path]:
    """Every plot the results allow, as ``folder/<run>-<plot>.png``; nothing without matplotlib."""
    if not available():
        return []
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written: list[Path] = []
    for name, run in results["runs"].items():
        if run.get("kind") == "sweep":
            written += _sweep_plot(plt, name, run, folder)
        elif "servers" in run:
            written += _load_plots(plt, name, run, folder)
            written += _batch_plot(plt, name, run, folder)
    return written
