"""``chunkserve run --ray``: documents spread over a pool of Ray Data actors that hold the models.

The driver reads the inputs (the same reader as ``chunkserve run``), skips what ``--resume`` finds in the output,
and appends the lines the actors return as they stream back, so an interrupted run leaves whole lines and
``--resume`` completes it. Documents travel through Ray's object store, so the driver holds the corpus's text.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import orjson
import ray

from service.config import Settings
from service.offline.options import RunOptions, Summary
from service.offline.reader import BadRecord, check_inputs, read_documents
from service.offline.writer import OutputIndex, ResultWriter, load_index, trim_partial_line
from service.scale.cluster import connect
from service.scale.options import ReplicaOptions
from service.scale.worker import ChunkWorker, JobSpec

# Documents per actor call: enough chunks to fill the batcher's window, few enough to stream results back often.
DOCS_PER_CALL = 16


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; carries the signal's name."""


def _rows(options: RunOptions, index: OutputIndex, summary: Summary) -> Iterator[dict[str, str]]:
    records = read_documents(
        options.inputs,
        text_field=options.text_field,
        id_field=options.id_field,
        stdin=options.stdin,
        exclude=options.output,
    )
    for record in records:
        if isinstance(record, BadRecord):
            summary.skipped += 1
            if len(summary.errors) < Summary.MAX_ERRORS:
                summary.errors.append(f"skipped {record.where()}: {record.reason}")
            continue
        done = sorted(index.chunks.get(record.id, ()))
        yield {"id": record.id, "text": record.text, "done": orjson.dumps(done).decode()}


def _spec(options: RunOptions, settings: Settings) -> JobSpec:
    timeout = options.timeout_s if options.timeout_s is not None else settings.remote_max_timeout_s
    return JobSpec(options.chunking, options.chunk_size, options.overlap, options.targets, options.assignment, timeout)


def run_on_ray(
    options: RunOptions, settings: Settings, overrides: dict[str, Any], address: str, workers: ReplicaOptions
) -> Summary:
    """Process ``options.inputs`` into ``options.output`` on ``workers.num_replicas`` actors of the cluster.

    Raises:
        FileExistsError: the output exists and neither ``resume`` nor ``overwrite`` is set.
        ValueError: an input cannot be read, or ``--aggregate`` or ``--fail-fast`` was asked for (not on Ray yet).
        OSError: the output cannot be written.
    """
    check_inputs(options.inputs)
    if options.aggregate is not None:
        raise ValueError("--aggregate is not supported with --ray yet; run without --ray for per-document means")
    if options.fail_fast:
        raise ValueError("--fail-fast is not supported with --ray yet: the actors run documents independently")
    output = options.output
    if output.exists() and output.stat().st_size and not (options.resume or options.overwrite):
        raise FileExistsError(f"{output} exists; pass --resume to continue it or --overwrite to replace it")
    index = OutputIndex()
    if options.resume and output.exists():
        trim_partial_line(output)
        index = load_index(output, with_means=False)
    summary = Summary()
    rows = list(_rows(options, index, summary))
    connect(address)
    started = time.perf_counter()
    dataset = ray.data.from_items(rows).map_batches(
        ChunkWorker,
        fn_constructor_kwargs={"settings": overrides, "spec": _spec(options, settings)},
        batch_size=DOCS_PER_CALL,
        concurrency=workers.num_replicas,
        num_cpus=workers.num_cpus,
        num_gpus=workers.num_gpus,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    writer = ResultWriter(output, append=options.resume)
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for line, note, failed in zip(batch["line"], batch["note"], batch["failed"], strict=True):
                if note:
                    summary.skipped += 1
                    if len(summary.errors) < Summary.MAX_ERRORS:
                        summary.errors.append(f"skipped {note}")
                    continue
                writer.add(str(line).encode() + b"\n")
                summary.chunks += 1
                summary.failed_chunks += int(failed)
            writer.flush()
    except Interrupted as stop:
        summary.interrupted = str(stop)
    finally:
        writer.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary.documents = len(rows)
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    summary.lines = writer.lines
    return summary
