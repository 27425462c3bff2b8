"""Live metrics with several labels and kinds; remote outcome counting with bounded host labels."""

from __future__ import annotations

from service.observability.metrics import LiveMetric, Metrics
from service.outbound.remote import RemoteStats


def test_live_metrics_render_counters_and_gauges_with_their_labels() -> None:
    metrics = Metrics()
    metrics.watch(
        lambda: [
            LiveMetric("demo_calls", "Calls.", ("host", "outcome"), {("a.example", "ok"): 3.0}),
            LiveMetric("demo_bytes", "Bytes.", ("device",), {("cuda:0",): 42.0}, kind="gauge"),
        ]
    )
    text = metrics.render().decode()
    assert 'demo_calls_total{host="a.example",outcome="ok"} 3.0' in text
    assert 'demo_bytes{device="cuda:0"} 42.0' in text
    assert "# TYPE demo_bytes gauge" in text


def test_request_observations_are_labelled_by_route_and_status() -> None:
    metrics = Metrics()
    metrics.observe_request("POST", "/v1/embeddings", 200, 0.02)
    metrics.observe_request("POST", "/v1/embeddings", 200, 0.03)
    text = metrics.render().decode()
    labels = 'method="POST",route="/v1/embeddings",status="200"'
    assert f"chunkserve_request_duration_seconds_count{{{labels}}} 2.0" in text


def test_remote_hosts_past_the_cap_share_one_label() -> None:
    stats = RemoteStats(max_hosts=2)
    for host in ("a", "b", "c", "d", "a"):
        stats.count(host, "ok")
    stats.count("c", "timeout")
    assert stats.outcomes == {("a", "ok"): 2, ("b", "ok"): 1, ("other", "ok"): 2, ("other", "timeout"): 1}
