"""GenerationEngine: one causal LM, its scheduler and thread; prompts checked against the context window."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from models.base import Sampling, Task
from models.generation import GenerationModel
from service.errors import InputTooLarge, InvalidInput
from service.inference.generation.scheduler import GenerationLimits, GenerationObserver, GenerationScheduler
from service.inference.generation.stream import Completion, GenerationRequest, TokenStream

# Below this much text, tokenizing on the event loop is cheaper than a hop to a worker thread.
_INLINE_TOKENIZE_CHARS = 8_000


@dataclass(frozen=True, slots=True)
class Prompt:
    """A tokenized prompt, already fitted to the context window."""

    ids: list[int]
    truncated: bool = False


class GenerationEngine:
    """Serves one generation model: tokenizes prompts, queues them on the scheduler, streams tokens back."""

    def __init__(
        self,
        model_id: str,
        model: GenerationModel,
        limits: GenerationLimits,
        executor: concurrent.futures.ThreadPoolExecutor,
        *,
        default_max_tokens: int = 256,
        observer: GenerationObserver | None = None,
    ) -> None:
        self.model_id = model_id
        self.model = model
        self.default_max_tokens = default_max_tokens
        self._executor = executor
        self.scheduler = GenerationScheduler(model_id, model, limits, executor, observer)

    @property
    def task(self) -> Task:
        return Task.GENERATION

    @property
    def alive(self) -> bool:
        return self.scheduler.alive

    @property
    def context_length(self) -> int:
        """Tokens one sequence may hold: the model's context, unless a step or KV-cache budget is smaller."""
        limits = self.scheduler.limits
        return min(self.model.max_input_tokens, limits.step_tokens, limits.kv_tokens)

    def info(self) -> dict[str, Any]:
        """The model's public description (task, device, dtype, context length)."""
        return {**self.model.info(), "id": self.model_id, "context_length": self.context_length}

    async def start(self) -> None:
        """Start the step loop on the model's thread."""
        self.scheduler.start()

    async def close(self, drain: bool = True) -> None:
        """Stop intake, finish (or fail) what is queued, then release the model's thread."""
        future = self.scheduler.close(drain)
        if future is not None:
            await asyncio.gather(asyncio.wrap_future(future), return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def prompt_ids(
        self, prompt: str | None = None, messages: Sequence[dict[str, str]] | None = None
    ) -> list[int]:
        """Token ids of a plain prompt or of a conversation (through the chat template when the model has one)."""
        size = len(prompt or "") + sum(len(m.get("content", "")) for m in messages or ())
        if messages is not None:
            chat = list(messages)
            if size <= _INLINE_TOKENIZE_CHARS:
                return self.model.encode_chat(chat)
            return await asyncio.to_thread(self.model.encode_chat, chat)
        if size <= _INLINE_TOKENIZE_CHARS:
            return self.model.encode_prompt(prompt or "")
        return await asyncio.to_thread(self.model.encode_prompt, prompt or "")

    def fit(self, ids: list[int], max_tokens: int | None, *, truncate: bool = False, field: str = "prompt") -> Prompt:
        """Fit ``ids`` to the context window, leaving room for at least one new token.

        Raises:
            InputTooLarge: the prompt fills the context window and ``truncate`` is off.
            InvalidInput: the prompt is empty.
        """
        if not ids:
            raise InvalidInput(f"{field} must not be empty", field=field)
        room = self.context_length - 1
        if len(ids) <= room:
            return Prompt(ids)
        if not truncate:
            raise InputTooLarge(
                f"{field} has {len(ids)} tokens; model {self.model_id!r} has a context of {self.context_length} "
                f"tokens, which must also hold the answer. Shorten it, or ask for truncation "
                f"(truncate_prompt_tokens).",
                field=field,
            )
        return Prompt(ids[len(ids) - room :], truncated=True)

    def stream(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
    ) -> TokenStream:
        """Queue ``prompt`` and return the caller's stream of text; ``max_tokens`` is cut to what the context holds.

        Raises:
            Overloaded: the queue is full.
            ShuttingDown: the model is closing.
        """
        room = self.context_length - len(prompt.ids)
        wanted = max_tokens if max_tokens is not None else self.default_max_tokens
        sampling = Sampling(max_tokens=max(1, min(wanted, room)), temperature=temperature, top_p=top_p, seed=seed)
        request = GenerationRequest(prompt=prompt.ids, sampling=sampling, stop=tuple(stop))
        self.scheduler.submit(request)
        return TokenStream(request)

    async def complete(self, prompt: Prompt, **options: Any) -> Completion:
        """Generate the whole text for ``prompt`` (options as for ``stream``).

        Raises:
            Overloaded, ShuttingDown: see ``stream``.
            BatchFailed: the model raised while decoding.
        """
        return await self.stream(prompt, **options).collect()
