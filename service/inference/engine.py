"""ModelEngine: one loaded model behind its own MicroBatcher and its own compute thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from models.base import Encoded, Model, PairModel, Task
from service.batching.batcher import BatchPolicy, MicroBatcher
from service.batching.ledger import Counts
from service.errors import InputTooLarge, InvalidInput, Overloaded
from service.observability.stats import BatchStats

log = logging.getLogger(__name__)

# Below this much text, tokenizing on the event loop is cheaper than a hop to a worker thread.
_INLINE_TOKENIZE_CHARS = 8_000


@dataclass(frozen=True, slots=True)
class EngineOutput:
    """Per-input results in the caller's order, and the tokens the model actually read."""

    results: list[Any]
    prompt_tokens: int


def set_torch_threads(threads: int | None) -> None:
    """Size torch's intra-op pool for the calling thread (a no-op for None)."""
    if threads is not None:
        import torch  # only here and in models/: the engine owns its compute thread

        torch.set_num_threads(threads)


def model_thread(model_id: str, torch_threads: int | None) -> concurrent.futures.ThreadPoolExecutor:
    """The one thread that runs every torch call of one model: loading, warm-up and each batch.

    Torch's OpenMP pool belongs to the thread that calls it; a second calling thread brings a second pool, and on a
    small CPU the two pools fight over the cores (measured: 18.5 ms → 28 ms a call with MiniLM on 2 cores).
    """
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=1,
        thread_name_prefix=f"model-{model_id}",
        initializer=set_torch_threads,
        initargs=(torch_threads,),
    )


def device_memory() -> dict[str, tuple[int, int]]:
    """Bytes allocated and reserved by torch on each CUDA device; empty without CUDA (or before torch loads)."""
    torch = sys.modules.get("torch")  # a scrape must never be the thing that imports torch
    if torch is None or not torch.cuda.is_available():
        return {}
    return {
        f"cuda:{i}": (int(torch.cuda.memory_allocated(i)), int(torch.cuda.memory_reserved(i)))
        for i in range(torch.cuda.device_count())
    }


class ModelEngine:
    """Runs one model: tokenizes requests, queues them on the batcher, returns each caller's results."""

    def __init__(
        self,
        model_id: str,
        model: Model,
        policy: BatchPolicy,
        *,
        truncate: bool = True,
        torch_threads: int | None = None,
        on_batch: Callable[[str, BatchStats], None] | None = None,
        executor: concurrent.futures.ThreadPoolExecutor | None = None,
    ) -> None:
        self.model_id = model_id
        self.model = model
        self.truncate = truncate
        # One thread per model: torch runs one batch at a time on one device, off the event loop. Pass the
        # executor the model was loaded in (see model_thread) so that no other thread ever runs its torch code.
        self._executor = executor if executor is not None else model_thread(model_id, torch_threads)
        self.batcher: MicroBatcher[Encoded, Any] = MicroBatcher(
            self._predict,
            cost=_cost,
            policy=policy,
            name=f"batcher-{model_id}",
            executor=self._executor,
            on_batch=(lambda stats: on_batch(model_id, stats)) if on_batch else None,
        )

    @property
    def task(self) -> Task:
        return self.model.task

    @property
    def alive(self) -> bool:
        return self.batcher.alive

    @property
    def queue_depth(self) -> int:
        """Inputs waiting for the model now."""
        return self.batcher.queue_depth

    @property
    def max_batch_size(self) -> int:
        return self.batcher.policy.max_batch_size

    @property
    def counts(self) -> Counts:
        """Inputs submitted, completed, failed and dropped, and batches run, since start."""
        return self.batcher.counts

    def check_room(self, n: int, what: str = "inputs") -> None:
        """Refuse ``n`` more inputs at once: for good when the queue could never hold them, else when it is full now.

        Costs a comparison: it runs before any per-input work (tokenizing), so an overloaded server says so fast.

        Raises:
            InputTooLarge: ``n`` is more than the queue holds even when empty (no retry can help: 413).
            Overloaded: the queue would overflow now; retry after the policy's ``retry_after_s`` (503).
        """
        policy = self.batcher.policy
        if n > policy.max_queue:
            raise InputTooLarge(
                f"{n} {what} at once for model {self.model_id!r}; its queue holds at most {policy.max_queue} "
                "(CHUNKSERVE_MAX_QUEUE)",
                field="input" if what == "inputs" else "text",
            )
        if self.batcher.queue_depth + n > policy.max_queue:
            raise Overloaded(
                f"model {self.model_id!r} cannot queue {n} more {what} now", retry_after_s=policy.retry_after_s
            )

    def info(self) -> dict[str, Any]:
        """The model's public description (task, device, dtype, limits)."""
        return {**self.model.info(), "id": self.model_id}

    async def start(self) -> None:
        """Start the batching loop."""
        await self.batcher.start()

    async def close(self, drain: bool = True) -> None:
        """Stop intake, finish (or fail) queued work, then release the compute thread."""
        await self.batcher.close(drain=drain)
        self._executor.shutdown(wait=True)

    async def encode(self, texts: Sequence[str], field: str = "input", truncate: bool | None = None) -> list[Encoded]:
        """Tokenize ``texts``, refusing over-long ones when truncation is off (``truncate`` None: the setting's).

        Raises:
            InputTooLarge: an input is longer than the model's limit and truncation is off.
        """
        if sum(len(t) for t in texts) <= _INLINE_TOKENIZE_CHARS:
            encoded = self.model.encode(texts)
        else:
            encoded = await asyncio.to_thread(self.model.encode, texts)
        return self._check_length(encoded, len(texts), field, truncate)

    def _check_length(self, encoded: list[Encoded], n: int, field: str, truncate: bool | None) -> list[Encoded]:
        if not (self.truncate if truncate is None else truncate):
            for i, enc in enumerate(encoded):
                if enc.truncated:
                    where = field if n == 1 else f"{field}[{i}]"
                    raise InputTooLarge(
                        f"{where} has {enc.original_length} tokens; model {self.model_id!r} reads at most "
                        f"{self.model.max_input_tokens}. Shorten or chunk it, or turn truncation on.",
                        field=where,
                    )
        return encoded

    async def run(
        self,
        texts: Sequence[str],
        field: str = "input",
        *,
        truncate: bool | None = None,
        normalize: bool | None = None,
        all_tokens: bool = False,
    ) -> EngineOutput:
        """Compute every text through the batcher; results come back in the order given.

        ``truncate`` overrides the setting for this call; ``normalize`` and ``all_tokens`` ask an embedding model
        for unnormalised (or normalised) vectors, or for every token's vector.

        Raises:
            InvalidInput: no texts were given.
            InputTooLarge: see ``encode``; or more texts than the queue can ever hold.
            Overloaded: the queue cannot take them all now (checked before tokenizing).
            BatchFailed: the model raised for one of them.
        """
        if not texts:
            raise InvalidInput(f"{field} must not be empty", field=field)
        self.check_room(len(texts))  # before any tokenizing: an overloaded server says so in microseconds
        encoded = await self.encode(texts, field, truncate)
        if normalize is not None or all_tokens:
            encoded = [dataclasses.replace(e, normalize=normalize, all_tokens=all_tokens) for e in encoded]
        return await self._submit(encoded)

    async def run_pairs(
        self, pairs: Sequence[tuple[str, str]], field: str = "texts", *, truncate: bool | None = None
    ) -> EngineOutput:
        """Compute (first, second) text pairs through the batcher: cross-encoders and pair classifiers.

        Raises:
            InvalidInput: no pairs, or a model that does not read pairs.
            InputTooLarge, Overloaded, BatchFailed: as ``run``.
        """
        if not pairs:
            raise InvalidInput(f"{field} must not be empty", field=field)
        if not isinstance(self.model, PairModel):
            raise InvalidInput(f"model {self.model_id!r} does not read text pairs", field=field)
        self.check_room(len(pairs))
        if sum(len(a) + len(b) for a, b in pairs) <= _INLINE_TOKENIZE_CHARS:
            encoded = self.model.encode_pairs(pairs)
        else:
            encoded = await asyncio.to_thread(self.model.encode_pairs, pairs)
        return await self._submit(self._check_length(encoded, len(pairs), field, truncate))

    async def _submit(self, encoded: list[Encoded]) -> EngineOutput:
        if len(encoded) == 1:
            results = [await self.batcher.submit(encoded[0])]
        else:
            results = await self.batcher.submit_many(encoded)
        return EngineOutput(results=results, prompt_tokens=sum(e.length for e in encoded))

    def _predict(self, batch: list[Encoded]) -> list[Any]:
        return self.model.predict(batch)


def _cost(item: Encoded) -> int:
    return item.length
