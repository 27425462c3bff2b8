"""One offline run end to end: check inputs and output, load models as the server does, run, clean up."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import time
from collections.abc import Sequence
from typing import Any

from service.config import Settings
from service.errors import ModelNotFound
from service.inference.registry import ModelRegistry, Phase
from service.jobs.targets import LocalTarget
from service.observability.metrics import Metrics
from service.offline.options import RunOptions, Summary
from service.offline.reader import check_inputs
from service.offline.runner import Runner
from service.offline.writer import OutputIndex, ResultWriter, load_index, trim_partial_line
from service.runtime import Loader, build_pipeline, default_loader, load_engines

_SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


def model_stats(metrics: Metrics, model_id: str, elapsed_s: float) -> dict[str, float]:
    """How a model's batcher did: batches, mean batch size, share of the run the model computed, padding share."""

    def value(name: str) -> float:
        return metrics.registry.get_sample_value(name, {"model": model_id}) or 0.0

    batches, inputs = value("chunkserve_batch_size_count"), value("chunkserve_batch_size_sum")
    padding, real = value("chunkserve_padding_tokens_total"), value("chunkserve_input_tokens_total")
    return {
        "batches": int(batches),
        "mean_batch_size": round(inputs / batches, 2) if batches else 0.0,
        "busy_share": round(value("chunkserve_inference_seconds_sum") / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        "padding_share": round(padding / (padding + real), 3) if padding + real else 0.0,
    }


def _needs_local(options: RunOptions, settings: Settings) -> bool:
    return bool(settings.models) or not options.targets or any(isinstance(t, LocalTarget) for t in options.targets)


async def run_async(
    options: RunOptions, settings: Settings, *, loader: Loader = default_loader, handle_signals: bool = False
) -> Summary:
    """Process ``options.inputs`` into ``options.output``; ``handle_signals`` turns SIGINT/SIGTERM into a clean stop.

    Raises:
        FileExistsError: the output exists and neither ``resume`` nor ``overwrite`` is set.
        ValueError: an input cannot be read (see ``check_inputs``), or a target names no loaded model.
        OSError: the output cannot be written.
    """
    check_inputs(options.inputs)
    options.check_output()
    output = options.output
    # Offline work is bounded by the runner's window; the queue limit is for concurrent clients of a server.
    settings = settings.model_copy(update={"max_queue": max(settings.max_queue, 1 << 40)})
    index = OutputIndex()
    if options.resume and output.exists():
        trim_partial_line(output)
        index = load_index(output, with_means=options.aggregate is not None)
    registry = ModelRegistry(expected=[m.id for m in settings.model_entries()])
    metrics = Metrics()
    pipeline, http = build_pipeline(settings, registry)
    loop = asyncio.get_running_loop()
    runner: Runner | None = None
    early_stop: list[str] = []  # a signal that came while models were loading

    def on_signal(name: str) -> None:
        if runner is not None:
            runner.stop(name)
        else:
            early_stop.append(name)

    if handle_signals:
        for signum, name in _SIGNALS.items():
            loop.add_signal_handler(signum, on_signal, name)
    try:
        started = time.perf_counter()
        if _needs_local(options, settings):
            await load_engines(settings, registry, loader, metrics)
        registry.phase = Phase.READY
        for target in options.targets:
            if isinstance(target, LocalTarget):
                try:
                    registry.get(target.model)
                except ModelNotFound as exc:
                    raise ValueError(f"--target {target.model!r}: {exc.message}") from None
        loaded = time.perf_counter()
        writer = ResultWriter(output, append=options.resume)
        try:
            runner = Runner(options, settings, pipeline, writer, index)
            runner.summary.load_s = round(loaded - started, 3)
            if early_stop:
                runner.stop(early_stop[0])
            else:
                await runner.main()
        finally:
            writer.close()
        runner.summary.elapsed_s = round(time.perf_counter() - loaded, 3)
        runner.summary.lines = writer.lines
        runner.summary.models = {m: model_stats(metrics, m, runner.summary.elapsed_s) for m in registry.engines}
        return runner.summary
    finally:
        if handle_signals:
            for signum in _SIGNALS:
                loop.remove_signal_handler(signum)
        await registry.close(drain=False)
        await http.aclose()


def run(
    inputs: Sequence[str] | str,
    output: str,
    *,
    settings: Settings | None = None,
    **options: Any,
) -> Summary:
    """Process ``inputs`` into the JSONL file ``output`` and return the summary (for scripts and notebooks).

    ``options`` are the fields of ``RunOptions`` (chunking, chunk_size, targets, aggregate, resume, ...); inside a
    running event loop (Jupyter) the work runs on a helper thread with its own loop.

    Raises:
        FileExistsError, ValueError, OSError: see ``run_async``.
    """
    opts = RunOptions.build([inputs] if isinstance(inputs, str) else inputs, output, **options)
    config = settings if settings is not None else Settings()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_async(opts, config))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run_async(opts, config)).result()
