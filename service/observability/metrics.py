"""Prometheus collectors, one registry per app (so several apps in one process never collide)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.observability.stats import BatchStats

_SIZE_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256)
_TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_TOKEN_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
_TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class LiveMetric:
    """A value kept elsewhere (batcher, remote client, device), read at scrape time."""

    name: str
    help: str
    labels: tuple[str, ...]
    values: dict[tuple[str, ...], float]
    kind: Literal["counter", "gauge"] = "counter"


class _LiveCollector(Collector):
    def __init__(self, read: Callable[[], list[LiveMetric]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        for live in self._read():
            family: CounterMetricFamily | GaugeMetricFamily
            if live.kind == "counter":
                family = CounterMetricFamily(live.name, live.help, labels=list(live.labels))
            else:
                family = GaugeMetricFamily(live.name, live.help, labels=list(live.labels))
            for labels, value in live.values.items():
                family.add_metric(list(labels), value)
            yield family


class Metrics:
    """The server's collectors; ``observe_batch`` is the batcher's ``on_batch`` hook."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batch_size = Histogram(
            "chunkserve_batch_size", "Inputs per model call.", ["model"], buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "chunkserve_batch_tokens",
            "Padded tokens per model call (longest x size).",
            ["model"],
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.padding_tokens = Counter(
            "chunkserve_padding_tokens", "Padding tokens computed and thrown away.", ["model"], registry=r
        )
        self.real_tokens = Counter("chunkserve_input_tokens", "Real input tokens computed.", ["model"], registry=r)
        self.batch_fill = Histogram(
            "chunkserve_batch_fill_ratio",
            "Batch size over max batch size.",
            ["model"],
            buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
            registry=r,
        )
        self.queue_wait = Histogram(
            "chunkserve_queue_wait_seconds",
            "Longest wait in queue of a batch's inputs.",
            ["model"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "chunkserve_inference_seconds",
            "Model compute time per batch.",
            ["model"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.batch_errors = Counter(
            "chunkserve_batch_errors", "Batches whose model call raised.", ["model"], registry=r
        )
        self.queue_depth = Gauge("chunkserve_queue_depth", "Inputs waiting per model.", ["model"], registry=r)
        self.request_duration = Histogram(
            "chunkserve_request_duration_seconds",
            "Requests by route template and status (WebSocket: the whole connection; 499: the client left).",
            ["method", "route", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "chunkserve_requests_in_flight", "HTTP requests and WebSocket connections being served.", registry=r
        )
        self.generation = GenerationMetrics(r)
        # Resident/virtual memory, CPU time and open files of this process (Linux /proc; nothing elsewhere).
        ProcessCollector(registry=r)
        self.max_batch_size: dict[str, int] = {}

    def watch(self, read: Callable[[], list[LiveMetric]]) -> None:
        """Expose values owned by other objects, read at each scrape."""
        self.registry.register(_LiveCollector(read))

    def observe_batch(self, model: str, stats: BatchStats) -> None:
        """Record one finished batch."""
        self.batch_size.labels(model).observe(stats.size)
        self.batch_tokens.labels(model).observe(stats.tokens)
        self.real_tokens.labels(model).inc(stats.real_tokens)
        self.padding_tokens.labels(model).inc(max(0, stats.tokens - stats.real_tokens))
        limit = self.max_batch_size.get(model)
        if limit:
            self.batch_fill.labels(model).observe(min(1.0, stats.size / limit))
        self.queue_wait.labels(model).observe(stats.queue_wait_s)
        self.inference.labels(model).observe(stats.compute_s)
        if not stats.ok:
            self.batch_errors.labels(model).inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request (``route`` is the template, never the raw path: bounded series)."""
        self.request_duration.labels(method, route, str(status)).observe(seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class GenerationMetrics:
    """Generation's collectors; the scheduler calls these hooks from the model thread (prometheus is thread-safe)."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.ttft = Histogram(
            "chunkserve_generation_time_to_first_token_seconds",
            "From a generation request's arrival to its first token.",
            ["model"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.token_gap = Histogram(
            "chunkserve_generation_inter_token_seconds",
            "Time between two tokens of one sequence.",
            ["model"],
            buckets=_TOKEN_GAP_BUCKETS,
            registry=r,
        )
        self.output_tokens = Counter(
            "chunkserve_generation_output_tokens", "Tokens generated (rate() is tokens/s).", ["model"], registry=r
        )
        self.requests = Counter(
            "chunkserve_generation_requests", "Generation requests finished.", ["model"], registry=r
        )
        self.step_sequences = Histogram(
            "chunkserve_generation_step_sequences",
            "Sequences in one generation step, by kind (prefill or decode).",
            ["model", "kind"],
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.step_seconds = Histogram(
            "chunkserve_generation_step_seconds",
            "Model compute per generation step, by kind.",
            ["model", "kind"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )

    def on_step(self, model_id: str, kind: str, sequences: int, tokens: int, seconds: float) -> None:
        """One prefill or decode step."""
        self.step_sequences.labels(model_id, kind).observe(sequences)
        self.step_seconds.labels(model_id, kind).observe(seconds)

    def on_first_token(self, model_id: str, seconds: float) -> None:
        """A request's first token."""
        self.ttft.labels(model_id).observe(seconds)

    def on_token_gap(self, model_id: str, seconds: float) -> None:
        """The time since a sequence's previous token."""
        self.token_gap.labels(model_id).observe(seconds)

    def on_finish(self, model_id: str, completion_tokens: int) -> None:
        """A request ended."""
        self.output_tokens.labels(model_id).inc(completion_tokens)
        self.requests.labels(model_id).inc()
