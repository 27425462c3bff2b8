"""The model protocol: what the service needs from a local model, with no asyncio or HTTP in sight."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class Task(StrEnum):
    """What a model does with a text."""

    EMBEDDING = "embedding"
    CLASSIFICATION = "classification"
    GENERATION = "generation"


@dataclass(frozen=True, slots=True)
class Classification:
    """One input's classification: the winning label, its probability and every label's probability."""

    label: str
    score: float
    scores: dict[str, float]


@dataclass(frozen=True, slots=True)
class Encoded:
    """One tokenized input: ids already cut to the model's limit, plus the length before the cut."""

    ids: list[int]
    original_length: int

    @property
    def length(self) -> int:
        return len(self.ids)

    @property
    def truncated(self) -> bool:
        return self.original_length > len(self.ids)


@dataclass(frozen=True, slots=True)
class Sampling:
    """How one generated sequence picks its tokens: greedy when ``temperature`` is 0; ``seed`` makes it repeatable."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


@runtime_checkable
class Model(Protocol):
    """A loaded, warmed-up local model.

    ``encode`` and ``predict`` are separate so that the service tokenizes once: it needs token counts
    to budget batches before the model runs, and hands the same ids to ``predict``.
    ``predict`` is called from one worker thread at a time and must return one result per input, in order.
    """

    name: str
    task: Task
    max_input_tokens: int
    device: str
    dtype: str

    def encode(self, texts: Sequence[str]) -> list[Encoded]: ...

    def predict(self, batch: Sequence[Encoded]) -> list[Any]: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def info(self) -> dict[str, Any]: ...
