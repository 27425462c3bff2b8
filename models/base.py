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
    RERANK = "rerank"  # a cross-encoder: one relevance score per (query, text) pair
    GENERATION = "generation"


class LoadRefused(ValueError):
    """A model that must not be served as configured: the message says why and what to do (no traceback needed)."""


@dataclass(frozen=True, slots=True)
class Classification:
    """One input's classification: the winning label, its probability and every label's probability."""

    label: str
    score: float
    scores: dict[str, float]
    logits: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class Encoded:
    """One tokenized input: ids already cut to the model's limit, plus the length before the cut.

    ``type_ids`` are the segment ids of a text pair (None: all zero). ``normalize`` overrides an embedding model's
    own normalisation (None: the model's); ``all_tokens`` asks an embedding model for every token's vector.
    """

    ids: list[int]
    original_length: int
    type_ids: list[int] | None = None
    normalize: bool | None = None
    all_tokens: bool = False

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


@dataclass(frozen=True, slots=True)
class Token:
    """One token of a tokenized text: its id, its text, whether it is special, and its character span."""

    id: int
    text: str
    special: bool
    start: int | None
    stop: int | None


@runtime_checkable
class PairModel(Protocol):
    """A model that also reads (first, second) text pairs: cross-encoders and pair classifiers."""

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[Encoded]: ...


@runtime_checkable
class Tokenizing(Protocol):
    """A model that can show how it tokenizes a text."""

    def tokens(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[Token]]: ...
