"""The bench harness's pure parts: arrivals, targets, sweep grammar and ranking, figures, /metrics deltas."""

from __future__ import annotations

import shlex
import statistics

import pytest

from service.bench.corpus import ZH_EVERY, load_corpus
from service.bench.figures import phase_figures, summarize
from service.bench.load import Bounds, PhaseRun, percentile, poisson_offsets
from service.bench.scenario import SCENARIOS, Sample, error_kind
from service.bench.scrape import Scrape, batch_figures
from service.bench.sweep import parse_grid, parse_objective, score, serve_command
from service.bench.targets import TargetSpec, parse_target, ray_command
from service.cli import build_parser, settings_from_args


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (50.0, 90.0, 99.0)
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize("rate", [5.0, 40.0])
def test_poisson_arrivals_have_the_requested_mean_rate(rate: float) -> None:
    offsets = poisson_offsets(rate, 4000, seed=7)
    gaps = [b - a for a, b in zip([0.0, *offsets], offsets, strict=False)]
    # 4,000 exponential gaps: the mean is within 5% of 1/rate (about 3 standard errors), and they spread like an
    # exponential does (standard deviation equal to the mean), not like a fixed tick.
    assert statistics.mean(gaps) == pytest.approx(1 / rate, rel=0.05)
    assert statistics.stdev(gaps) == pytest.approx(1 / rate, rel=0.1)
    assert poisson_offsets(rate, 50, seed=7) == offsets[:50]  # seeded: the same schedule every run


def test_a_phase_needs_a_bound_and_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="request count or a duration"):
        Bounds()
    with pytest.raises(ValueError, match="must be positive"):
        poisson_offsets(0, 10, seed=0)


def test_target_forms() -> None:
    assert parse_target("naive") == TargetSpec("naive")
    spawn = parse_target("spawn:max_batch_size=1,max-wait-ms=2")
    assert spawn.settings == (("max_batch_size", "1"), ("max_wait_ms", "2"))
    assert spawn.name == "chunkserve max_batch_size=1 max_wait_ms=2"
    assert parse_target("http://10.0.0.2:8000/").url == "http://10.0.0.2:8000"
    with pytest.raises(ValueError, match="expected a URL"):
        parse_target("localhost:8000")


def test_spawn_ray_target_splits_replica_flags_from_settings() -> None:
    assert parse_target("spawn-ray") == TargetSpec("spawn-ray")
    ray = parse_target("spawn-ray:replicas=2,replica-cpus=1,max_batch_size=8")
    assert ray.name == "chunkserve on Ray replicas=2 replica_cpus=1 max_batch_size=8"
    args, settings = ray_command(ray.settings)
    assert args == ["serve", "--ray", "--replicas", "2", "--replica-cpus", "1"]
    assert settings == (("max_batch_size", "8"),)
    assert build_parser().parse_args([*args, "--port", "1"]).replicas == 2  # flags chunkserve serve takes


def test_sweep_grid_checks_names_and_values() -> None:
    assert parse_grid(["max_batch_size=1,8", "max-wait-ms=0,2"]) == {
        "max_batch_size": ["1", "8"],
        "max_wait_ms": ["0", "2"],
    }
    with pytest.raises(SystemExit, match="not a chunkserve setting"):
        parse_grid(["batch_sise=1,2"])
    with pytest.raises(SystemExit, match="max_batch_size=0"):
        parse_grid(["max_batch_size=0,8"])
    assert parse_objective("throughput") is None
    assert parse_objective("throughput@p99<=250") == 250.0
    with pytest.raises(SystemExit, match="objective"):
        parse_objective("latency")


def _fig(inputs_per_s: float, p99: float, errors: int = 0) -> dict[str, object]:
    return {"inputs_per_s": inputs_per_s, "p99_ms": p99, "errors": errors}


def test_score_takes_the_best_level_within_the_p99_bound_and_without_errors() -> None:
    levels = {"c8": _fig(50, 100), "c32": _fig(70, 400), "c64": _fig(90, 50, errors=1)}
    assert score(levels, None) == (70, "c32")  # c64 had errors
    assert score(levels, 200) == (50, "c8")
    assert score(levels, 10) == (None, None)


def test_the_winner_command_is_a_valid_serve_command_line() -> None:
    command = serve_command({"max_batch_size": "8", "max_wait_ms": "2", "truncate": "false"})
    assert command == "chunkserve serve --max-batch-size 8 --max-wait-ms 2 --no-truncate"
    settings = settings_from_args(build_parser().parse_args(shlex.split(command)[1:]))
    assert (settings.max_batch_size, settings.max_wait_ms, settings.truncate) == (8, 2.0, False)


def test_phase_figures_count_shed_load_apart_from_errors() -> None:
    samples = [Sample(0.01 * (i + 1), inputs=2, tokens=10) for i in range(10)]
    samples += [Sample(0.5, error=error_kind(503)), Sample(0.5, error=error_kind(500)), Sample(0.1, error="timeout")]
    figures = phase_figures(PhaseRun("closed", 4, samples, elapsed_s=2.0, cut=1))
    assert (figures["requests"], figures["inputs"], figures["tokens"]) == (10, 20, 100)
    assert (figures["errors"], figures["errors_by_kind"], figures["shed_503"]) == (2, {"http_500": 1, "timeout": 1}, 1)
    assert (figures["sent"], figures["cut_at_deadline"]) == (14, 1)
    assert (figures["inputs_per_s"], figures["requests_per_s"], figures["tokens_per_s"]) == (10.0, 5.0, 50.0)
    assert (figures["p50_ms"], figures["p99_ms"], figures["max_ms"]) == (50.0, 100.0, 100.0)


def test_summary_over_repeats_shows_the_spread() -> None:
    repeats = [{"inputs_per_s": v, "p50_ms": 10.0 * v, "requests_per_s": v} for v in (3.0, 1.0, 2.0)]
    summary = summarize(repeats)
    assert summary["inputs_per_s"] == 2.0 and summary["repeats"] == 3
    assert summary["spread"]["inputs_per_s"] == {"min": 1.0, "median": 2.0, "max": 3.0}
    assert summary["spread"]["p50_ms"] == {"min": 10.0, "median": 20.0, "max": 30.0}
    two = summarize([{"inputs_per_s": 4.0, "p50_ms": 5.0}, {"inputs_per_s": 2.0, "p50_ms": 9.0}])
    assert (two["inputs_per_s"], two["p50_ms"]) == (3.0, 7.0)  # medians, not the figures of one repeat


def _hist(name: str, model: str, cumulative: dict[str, float], total: float, count: float) -> Scrape:
    out: Scrape = {(f"{name}_bucket", (("le", le), ("model", model))): v for le, v in cumulative.items()}
    out[(f"{name}_sum", (("model", model),))] = total
    out[(f"{name}_count", (("model", model),))] = count
    return out


def test_batch_figures_are_the_difference_of_two_scrapes() -> None:
    before = _hist("chunkserve_batch_size", "m", {"1.0": 2, "4.0": 3, "+Inf": 3}, 5, 3)
    after = _hist("chunkserve_batch_size", "m", {"1.0": 4, "4.0": 8, "+Inf": 9}, 35, 9)
    after |= _hist("chunkserve_batch_size", "other", {"1.0": 50, "+Inf": 50}, 50, 50)  # another model: ignored
    before[("chunkserve_padding_tokens_total", (("model", "m"),))] = 10
    after[("chunkserve_padding_tokens_total", (("model", "m"),))] = 40
    after[("chunkserve_input_tokens_total", (("model", "m"),))] = 90
    after[("chunkserve_remote_calls_total", (("host", "h"), ("outcome", "ok")))] = 7
    figures = batch_figures(before, after, "m")
    assert (figures["batches"], figures["batched_inputs"], figures["mean_batch_size"]) == (6, 30, 5.0)
    assert figures["batch_size_counts"] == {"<=1": 2, "<=4": 3, "<=+Inf": 1}
    assert figures["padding_share"] == 0.25  # 30 padding of 120 tokens
    assert figures["remote_outcomes"] == {"ok": 7}


def test_the_built_in_corpus_is_deterministic_mixed_and_in_range() -> None:
    texts = load_corpus(None, 50)
    assert texts == load_corpus(None, 50)
    assert len(texts) == 50
    chinese = texts[ZH_EVERY - 1 :: ZH_EVERY]
    english = [t for i, t in enumerate(texts) if i % ZH_EVERY != ZH_EVERY - 1]
    assert all(20 <= len(t.split()) <= 250 for t in english)
    assert all(" " not in t and t.endswith("。") for t in chinese)
    assert len({len(t) for t in texts}) > 40  # mixed lengths


def test_every_scenario_the_issue_names_is_registered() -> None:
    assert {"embeddings", "classify", "process", "stream", "fanout"} <= set(SCENARIOS)
