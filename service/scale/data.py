"""``chunkserve run --ray``: documents spread over a pool of Ray Data actors that hold the models.

The driver reads the inputs (the same reader as ``chunkserve run``), skips what ``--resume`` finds in the output,
and appends the lines the actors return as they stream back, so an interrupted run leaves whole lines and
``--resume`` completes it. Documents travel through Ray's object store, so the driver holds the corpus's text.

``--aggregate``, ``--ordered`` and ``--fail-fast`` mean what they mean to ``chunkserve run``: a document is
processed whole inside one actor call, so the actor writes its mean lines after its chunk lines (with the sums
``--resume`` read back from the output); Ray Data keeps the calls' results in input order (``preserve_order``)
and the actor keeps a document's lines in plan order; the first failed chunk or bad record stops the run (exit 1).
"""

from __future__ import annotations

import queue
import signal
import threading
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
from service.scale.worker import CHUNK, MEAN, NEW, SKIP, ChunkWorker, JobSpec, pack_means

# Documents per actor call: enough chunks to fill the batcher's window, few enough to stream results back often.
DOCS_PER_CALL = 16


_END = object()
_POLL_S = 0.1  # how soon a signal is noticed while the next batch is still being computed


def _batches(dataset: Any, stop: list[str]) -> Iterator[dict[str, Any]]:
    """The dataset's output batches as they complete, until they end or ``stop`` gets a signal's name.

    Ray's iterator blocks until the next batch is done; a thread pulls from it so that a signal is acted on
    within ``_POLL_S`` instead of after the batch in flight.

    Raises:
        Exception: whatever the pipeline raised.
    """
    ready: queue.Queue[Any] = queue.Queue()

    def pump() -> None:
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                ready.put(batch)
                if stop:
                    return
        except Exception as exc:
            ready.put(exc)
        finally:
            ready.put(_END)

    threading.Thread(target=pump, name="ray-data-results", daemon=True).start()
    while not stop:
        try:
            item = ready.get(timeout=_POLL_S)
        except queue.Empty:
            continue
        if item is _END:
            return
        if isinstance(item, Exception):
            raise item
        yield item


def _rows(options: RunOptions, index: OutputIndex, summary: Summary) -> Iterator[dict[str, str]]:
    """The documents to send, each with what the output holds of it already (``--resume``).

    With ``--fail-fast`` a bad record ends the rows: the run stops there, as ``chunkserve run`` does.
    """
    means = pack_means(index) if options.aggregate else {}
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
            if options.fail_fast:
                summary.interrupted = "fail-fast"
                return
            continue
        done = sorted(index.chunks.get(record.id, ()))
        row = {"id": record.id, "text": record.text, "done": orjson.dumps(done).decode()}
        yield {**row, "means": means.get(record.id, "")}


def _spec(options: RunOptions, settings: Settings) -> JobSpec:
    timeout = options.timeout_s if options.timeout_s is not None else settings.remote_max_timeout_s
    return JobSpec(
        options.chunking,
        options.chunk_size,
        options.overlap,
        options.targets,
        options.assignment,
        timeout,
        aggregate=options.aggregate is not None,
    )


def run_on_ray(
    options: RunOptions, settings: Settings, overrides: dict[str, Any], address: str, workers: ReplicaOptions
) -> Summary:
    """Process ``options.inputs`` into ``options.output`` on ``workers.num_replicas`` actors of the cluster.

    Raises:
        FileExistsError: the output exists and neither ``resume`` nor ``overwrite`` is set.
        ValueError: an input cannot be read.
        OSError: the output cannot be written.
    """
    check_inputs(options.inputs)
    output = options.output
    if output.exists() and output.stat().st_size and not (options.resume or options.overwrite):
        raise FileExistsError(f"{output} exists; pass --resume to continue it or --overwrite to replace it")
    index = OutputIndex()
    if options.resume and output.exists():
        trim_partial_line(output)
        index = load_index(output, with_means=options.aggregate is not None)
    summary = Summary()
    rows = list(_rows(options, index, summary))
    if summary.interrupted is not None:  # --fail-fast and a bad record: nothing is started
        ResultWriter(output, append=options.resume).close()  # the output is there (emptied by --overwrite)
        return summary
    connect(address)
    started = time.perf_counter()
    # One block per actor call: each call's lines stream back (and are written) as soon as it is done.
    blocks = max(1, -(-len(rows) // DOCS_PER_CALL))
    dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        ChunkWorker,
        fn_constructor_kwargs={"settings": overrides, "spec": _spec(options, settings)},
        batch_size=DOCS_PER_CALL,
        # One call at a time in each actor (the next one already shipped): a call's documents fill the batcher,
        # and its lines come back, and are written, as soon as it is done rather than with its neighbours'.
        compute=ray.data.ActorPoolStrategy(
            size=workers.num_replicas, max_tasks_in_flight_per_actor=2, max_concurrent_calls_per_actor=1
        ),
        num_cpus=workers.num_cpus,
        num_gpus=workers.num_gpus,
    )
    # --ordered: the calls' results come back in input order (a call done early waits for the ones before it).
    dataset.context.execution_options.preserve_order = options.ordered

    stop: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only a flag: an exception raised here would surface inside Ray's own code, wherever the main thread is.
        stop.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    writer = ResultWriter(output, append=options.resume)
    try:
        for batch in _batches(dataset, stop):
            if not _record(batch, writer, summary, fail_fast=options.fail_fast):
                stop.append("fail-fast")
            writer.flush()
    finally:
        writer.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop:
        summary.interrupted = stop[0]
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    summary.lines = writer.lines
    return summary


def _record(batch: dict[str, Any], writer: ResultWriter, summary: Summary, *, fail_fast: bool) -> bool:
    """Queue a batch's lines and count them; False when ``fail_fast`` and a chunk failed or a document was skipped.

    Stopping writes the lines up to the failure (the failed chunk's line included), as ``chunkserve run`` does.
    """
    for kind, line, note, failed in zip(batch["kind"], batch["line"], batch["note"], batch["failed"], strict=True):
        if kind == SKIP:
            summary.skipped += 1
            if len(summary.errors) < Summary.MAX_ERRORS:
                summary.errors.append(f"skipped {note}")
        elif kind in (CHUNK, MEAN):
            writer.add(str(line).encode() + b"\n")
            if kind == CHUNK:
                summary.chunks += 1
                summary.failed_chunks += int(failed)
        elif kind == NEW:
            summary.documents += 1
        else:
            summary.already_done += 1
        if fail_fast and (kind == SKIP or int(failed)):
            return False
    return True
