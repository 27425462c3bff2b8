"""Settings → running engines: the one place that turns configuration into loaded, started models.

Used by the HTTP lifespan, the offline runner and the benchmark, so all three load models the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from models.base import Model
from models.generation import GenerationModel
from models.loading import LoadOptions, load_local, load_model
from models.packaged import default_model_path
from service.batching.batcher import BatchPolicy
from service.config import Settings
from service.inference.calibrate import measure_batch_overhead
from service.inference.engine import ModelEngine, device_memory, model_thread
from service.inference.generation.engine import GenerationEngine
from service.inference.generation.scheduler import GenerationLimits
from service.inference.machine import GPU_BATCH, SMALL_CPU_BATCH, Machine, choose_defaults, detect_machine
from service.inference.model_entry import ModelEntry
from service.inference.registry import ModelRegistry, Phase
from service.jobs.pipeline import Pipeline, PipelineLimits, Resolver
from service.jobs.targets import JobLimits
from service.observability.metrics import LiveMetric, Metrics
from service.outbound.aio import GuardedSession
from service.outbound.guard import OutboundPolicy
from service.outbound.remote import RemoteClient, RetryPolicy

log = logging.getLogger("chunkserve")

Loader = Callable[[ModelEntry, LoadOptions], Model | GenerationModel]


def local_loader(entry: ModelEntry, options: LoadOptions) -> Model | GenerationModel:
    """Load ``entry`` from its directory (the packaged default when it names none): an encoder or a generator."""
    path = entry.path if entry.path is not None else default_model_path()
    return load_local(entry.id, path, entry.task, options)


def default_loader(entry: ModelEntry, options: LoadOptions) -> Model:
    """Load ``entry`` as an encoder (embedding or classification); see ``local_loader``.

    Raises:
        ValueError: ``entry`` is a generation model.
    """
    path = entry.path if entry.path is not None else default_model_path()
    return load_model(entry.id, path, entry.task, options)


# One number each, for callers that size things before a model (and so the machine rule) is in play: the Ray
# deployment's request caps. The engines themselves take batch_policy's choice for the machine.
CPU_BATCH_SIZE = SMALL_CPU_BATCH
GPU_BATCH_SIZE = GPU_BATCH


def effective_threads(settings: Settings, machine: Machine | None = None) -> int:
    """Torch intra-op threads: the setting, else what ``choose_defaults`` picks for this machine."""
    if settings.torch_threads:
        return settings.torch_threads
    return choose_defaults(machine or detect_machine()).torch_threads


def batch_policy(
    settings: Settings, device: str = "cpu", machine: Machine | None = None, overhead_tokens: float | None = None
) -> BatchPolicy:
    """The batcher budgets named by the settings; an unset batch size or wait is chosen for the machine, an unset
    call overhead is ``overhead_tokens`` (measured by ``load_engines``)."""
    found = machine or detect_machine()
    defaults = choose_defaults(replace(found, gpu=device != "cpu"))
    size = settings.max_batch_size
    if size is None:
        size = min(defaults.max_batch_size, settings.batch_window)
    wait_ms = settings.max_wait_ms
    if wait_ms is None:
        wait_ms = defaults.max_wait_ms
    return BatchPolicy(
        max_batch_size=size,
        max_wait_s=wait_ms / 1000.0,
        max_batch_tokens=settings.max_batch_tokens,
        max_queue=settings.max_queue,
        window=settings.batch_window,
        batch_overhead_tokens=settings.batch_overhead_tokens or overhead_tokens,
    )


def generation_limits(settings: Settings) -> GenerationLimits:
    """The generation scheduler's budgets named by the settings."""
    return GenerationLimits(
        max_running=settings.generation_max_running,
        step_tokens=settings.generation_step_tokens,
        kv_tokens=settings.generation_kv_tokens,
        max_waiting=settings.generation_max_queue,
    )


def check_model_fits(settings: Settings, model_id: str, model: Model | GenerationModel) -> None:
    """Refuse settings under which a full-length input of ``model`` could never be batched.

    Raises:
        ValueError: ``max_batch_tokens`` is below an encoder's input limit.
    """
    if isinstance(model, GenerationModel):
        return  # a generation engine fits its context to its budgets instead
    if settings.max_batch_tokens < model.max_input_tokens:
        raise ValueError(
            f"max_batch_tokens ({settings.max_batch_tokens}) is smaller than one full-length input of model "
            f"{model_id!r} ({model.max_input_tokens} tokens); set CHUNKSERVE_MAX_BATCH_TOKENS (or "
            f"--max-batch-tokens) to at least {model.max_input_tokens}"
        )


def load_options(settings: Settings, threads: int) -> LoadOptions:
    """How the settings ask models to load; the openvino backend always runs on the CPU, so auto means cpu."""
    device = "cpu" if settings.backend == "openvino" and settings.device == "auto" else settings.device
    return LoadOptions(
        device=device,
        dtype=settings.dtype,
        progress_bars=settings.hf_progress_bars,
        backend=settings.backend,
        backend_cache=settings.backend_cache,
        # OpenVINO's inference threads follow torch's: the same cores, the same one model thread calling.
        threads=threads,
    )


async def load_engines(settings: Settings, registry: ModelRegistry, loader: Loader, metrics: Metrics) -> None:
    """Load, warm and start every configured model, one after another, off the event loop.

    Raises:
        Exception: whatever loading raised; the registry is then marked failed.
    """
    threads = effective_threads(settings)
    options = load_options(settings, threads)
    loop = asyncio.get_running_loop()
    for entry in settings.model_entries():
        thread = model_thread(entry.id, threads)
        try:
            model = await loop.run_in_executor(thread, loader, entry, options)
            check_model_fits(settings, entry.id, model)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        if isinstance(model, GenerationModel):
            generator = GenerationEngine(
                entry.id,
                model,
                generation_limits(settings),
                thread,
                default_max_tokens=settings.generation_max_tokens,
                observer=metrics.generation,
            )
            await generator.start()
            registry.add_generator(generator)
            log.info("model %s ready: %s", entry.id, model.info())
            continue
        device = str(model.info().get("device", "cpu"))
        measured = None
        if settings.batch_overhead_tokens is None:  # measured on the model's own thread, as every call of it runs
            measured = await loop.run_in_executor(thread, measure_batch_overhead, model)
        policy = batch_policy(settings, device, overhead_tokens=measured)
        reason = choose_defaults(replace(detect_machine(), gpu=device != "cpu")).reason
        cost = policy.batch_overhead_tokens
        said = "unmeasured, so batches are cut full" if cost is None else f"{cost:.0f} padded tokens"
        log.info("batching defaults: %s; a model call costs %s", reason, said)
        metrics.max_batch_size[entry.id] = policy.max_batch_size
        engine = ModelEngine(
            entry.id,
            model,
            policy,
            truncate=settings.truncate,
            torch_threads=threads,
            on_batch=metrics.observe_batch,
            executor=thread,
        )
        await engine.start()
        registry.add(engine)
        details = {k: v for k, v in model.info().items() if k != "id"}
        log.info("model %s ready", entry.id, extra={"fields": {"model": entry.id, **details}})
    if registry.phase is Phase.LOADING:  # a shutdown that began while loading must stay a shutdown
        registry.phase = Phase.READY


def build_pipeline(
    settings: Settings, registry: ModelRegistry, resolver: Resolver | None = None
) -> tuple[Pipeline, GuardedSession]:
    """The chunk pipeline and the one shared outbound HTTP session (the caller closes it; build it on the loop)."""
    policy = OutboundPolicy.from_allowlist(settings.remote_allowlist)
    # The session has no connection limit of its own: the per-host semaphores are the real limit.
    http = GuardedSession(policy, resolver=resolver)
    remote = RemoteClient(
        http,
        per_host_limit=settings.remote_per_host_limit,
        retry=RetryPolicy(attempts=settings.remote_retries),
        max_response_bytes=settings.remote_max_response_bytes,
        api_keys={host: key.get_secret_value() for host, key in settings.remote_api_keys.items()},
    )
    limits_ = PipelineLimits(
        max_chunks=settings.max_chunks,
        max_timeout_s=settings.remote_max_timeout_s,
        default_timeout_s=settings.remote_timeout_s,
        window=settings.job_window,
        max_result_bytes=settings.max_job_result_bytes,
    )
    return Pipeline(registry, remote, policy, limits_, resolver=resolver), http


def live_metrics(registry: ModelRegistry, pipeline: Pipeline) -> list[LiveMetric]:
    """Values owned by batchers, the remote client and the device, for /metrics."""
    engines = registry.engines.values()
    schedulers = [g.scheduler for g in registry.generators.values()]
    remote = pipeline.remote.stats
    memory = device_memory()
    return [
        LiveMetric(
            "chunkserve_generation_running_sequences",
            "Sequences decoding now per generation model.",
            ("model",),
            {(s.model_id,): float(s.running) for s in schedulers},
            kind="gauge",
        ),
        LiveMetric(
            "chunkserve_generation_waiting_sequences",
            "Generation requests queued per model, not yet decoding.",
            ("model",),
            {(s.model_id,): float(s.waiting) for s in schedulers},
            kind="gauge",
        ),
        LiveMetric(
            "chunkserve_generation_kv_cache_tokens",
            "KV-cache positions held per generation model (sequences x padded width).",
            ("model",),
            {(s.model_id,): float(s.cache_tokens) for s in schedulers},
            kind="gauge",
        ),
        LiveMetric(
            "chunkserve_generation_kv_cache_usage_ratio",
            "KV-cache tokens reserved (prompt + max_tokens of running sequences) over the budget.",
            ("model",),
            {(s.model_id,): s.reserved / s.limits.kv_tokens for s in schedulers},
            kind="gauge",
        ),
        LiveMetric(
            "chunkserve_dropped_inputs",
            "Queued inputs dropped before compute because their caller went away.",
            ("model",),
            {(e.model_id,): float(e.counts.dropped) for e in engines},
        ),
        LiveMetric(
            "chunkserve_failed_inputs",
            "Inputs whose model call raised.",
            ("model",),
            {(e.model_id,): float(e.counts.failed) for e in engines},
        ),
        LiveMetric(
            "chunkserve_remote_calls",
            "Remote calls by host and final outcome (ok, connect, status, timeout, malformed, too_large, cancelled).",
            ("host", "outcome"),
            {key: float(v) for key, v in remote.outcomes.items()},
        ),
        LiveMetric(
            "chunkserve_remote_retries",
            "Remote tries repeated after a connect error, 429 or 5xx.",
            (),
            {(): float(remote.retries)},
        ),
        LiveMetric(
            "chunkserve_gpu_memory_allocated_bytes",
            "Memory held by torch tensors per CUDA device.",
            ("device",),
            {(device,): float(allocated) for device, (allocated, _) in memory.items()},
            kind="gauge",
        ),
        LiveMetric(
            "chunkserve_gpu_memory_reserved_bytes",
            "Memory reserved by torch's caching allocator per CUDA device.",
            ("device",),
            {(device,): float(reserved) for device, (_, reserved) in memory.items()},
            kind="gauge",
        ),
    ]


def job_limits(settings: Settings) -> JobLimits:
    """The limits a request is checked against while it becomes a job."""
    return JobLimits(
        max_text_chars=settings.max_text_chars,
        max_targets=settings.max_targets,
        default_timeout_s=settings.remote_timeout_s,
    )
