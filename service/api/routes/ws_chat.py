"""Chat over the jobs WebSocket: a message to a generation model streams ``token`` messages, then ``done``.

The conversation is the connection's: each answered turn is appended to its history, and the oldest turns are
dropped first when the history no longer fits the model's context next to the new turn and its answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from service.api.generation_schemas import ChatTurn
from service.inference.generation.engine import GenerationEngine, Prompt
from service.inference.registry import ModelRegistry

Send = Callable[..., Awaitable[None]]


class Conversation:
    """One connection's turns (user and assistant messages, oldest first)."""

    def __init__(self) -> None:
        self.turns: list[dict[str, str]] = []
        self._lock = asyncio.Lock()

    async def prompt(self, engine: GenerationEngine, turn: ChatTurn) -> tuple[Prompt, int]:
        """The prompt for ``turn`` after the history that fits; and how many old messages were dropped.

        Raises:
            InputTooLarge: the new turn alone does not fit the context.
        """
        answer_room = min(turn.max_tokens or engine.default_max_tokens, engine.context_length // 4)
        budget = engine.context_length - answer_room
        system = [{"role": "system", "content": turn.system}] if turn.system else []
        user = {"role": "user", "content": turn.message}
        async with self._lock:
            if turn.reset:
                self.turns.clear()
            history = list(self.turns)
        dropped = 0
        while True:
            ids = await engine.prompt_ids(messages=[*system, *history, user])
            if len(ids) <= budget or not history:
                return engine.fit(ids, turn.max_tokens, field="message"), dropped
            # Oldest first, a user turn with its answer.
            history, dropped = history[2:], dropped + 2

    async def record(self, user: str, answer: str, dropped: int) -> None:
        """Append an answered turn, forgetting the turns that no longer fit."""
        async with self._lock:
            del self.turns[: min(dropped, len(self.turns))]
            self.turns += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


async def run_chat(
    registry: ModelRegistry, conversation: Conversation, turn: ChatTurn, job_id: str, send: Send
) -> None:
    """Answer ``turn``: ``token`` messages as the text comes, then ``done`` with the whole text and usage.

    Raises:
        ChunkserveError: the model is unknown, the turn does not fit, the queue is full, or generation failed.
    """
    engine = registry.generator(turn.model)
    prompt, dropped = await conversation.prompt(engine, turn)
    stream = engine.stream(
        prompt,
        max_tokens=turn.max_tokens,
        temperature=turn.temperature,
        top_p=turn.top_p,
        seed=turn.seed,
        stop=turn.stops(),
    )
    pieces: list[str] = []
    async for piece in stream:
        pieces.append(piece)
        await send("token", job_id, text=piece)
    finish = stream.finish
    if finish is None:  # pragma: no cover - the stream ends only with a finish or an error
        return
    text = "".join(pieces)
    await conversation.record(turn.message, text, dropped)
    usage: dict[str, Any] = {
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
    }
    await send("done", job_id, text=text, finish_reason=finish.reason, usage=usage, dropped_messages=dropped)
