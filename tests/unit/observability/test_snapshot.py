"""The dashboard's JSON view of the collectors: counts, shares and bucket-estimated quantiles."""

from __future__ import annotations

import pytest

from service.observability.metrics import LiveMetric, Metrics
from service.observability.snapshot import snapshot
from service.observability.stats import BatchStats


def _batch(size: int, tokens: int, real: int) -> BatchStats:
    return BatchStats(size=size, tokens=tokens, real_tokens=real, queue_wait_s=0.001, compute_s=0.01, ok=True)


def test_models_get_batches_histogram_fill_and_padding_share() -> None:
    metrics = Metrics()
    metrics.max_batch_size["m"] = 8
    for size in (1, 2, 8, 8):
        metrics.observe_batch("m", _batch(size, tokens=100 * size, real=75 * size))
    metrics.queue_depth.labels("m").set(5)
    model = snapshot(metrics.registry, jobs_in_flight=3)["models"]["m"]
    assert model["batches"] == 4 and model["inputs"] == 19 and model["mean_batch"] == 4.75
    assert model["batch_sizes"] == {"1": 1, "2": 1, "8": 2}
    assert model["fill_ratio"] == pytest.approx((1 + 2 + 8 + 8) / 8 / 4, abs=1e-3)
    assert model["padding_share"] == 0.25
    assert model["queue_depth"] == 5


def test_route_quantiles_are_interpolated_inside_buckets() -> None:
    metrics = Metrics()
    # 100 requests: 50 in (0.025, 0.05], 49 in (0.05, 0.1], 1 in (0.5, 1.0].
    for seconds, n in ((0.03, 50), (0.07, 49), (0.7, 1)):
        for _ in range(n):
            metrics.observe_request("POST", "/v1/embeddings", 200, seconds)
    metrics.observe_request("POST", "/v1/embeddings", 503, 0.03)  # statuses are merged per route
    route = snapshot(metrics.registry, jobs_in_flight=0)["routes"][0]
    assert (route["method"], route["route"], route["count"]) == ("POST", "/v1/embeddings", 101)
    # rank 50.5 of 101: 51 observations at or below 0.05, so inside (0.025, 0.05]: 0.025 + 0.025 * 50.5/51.
    assert route["p50_ms"] == pytest.approx(1000 * (0.025 + 0.025 * 50.5 / 51), abs=0.1)
    # rank 99.99: the 100th observation is the last in (0.05, 0.1], so just under 100 ms.
    assert 99.0 <= route["p99_ms"] <= 100.0


def test_remote_outcomes_in_flight_and_jobs() -> None:
    metrics = Metrics()
    metrics.watch(
        lambda: [
            LiveMetric(
                "chunkserve_remote_calls",
                "calls",
                ("host", "outcome"),
                {("a.example", "ok"): 7.0, ("a.example", "timeout"): 2.0, ("b.example", "ok"): 1.0},
            )
        ]
    )
    metrics.in_flight.inc()
    metrics.in_flight.inc()
    data = snapshot(metrics.registry, jobs_in_flight=4)
    assert data["remote"] == {"a.example": {"ok": 7, "timeout": 2}, "b.example": {"ok": 1}}
    assert data["requests_in_flight"] == 2 and data["jobs_in_flight"] == 4


def test_nothing_observed_yet_gives_empty_values_not_errors() -> None:
    data = snapshot(Metrics().registry, jobs_in_flight=0)
    assert data["models"] == {} and data["routes"] == [] and data["remote"] == {}
