"""Single-label sequence classification: softmax over the head's logits, every label's probability."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from models._hf import HFModel
from models.base import Classification, Encoded, Task


def label_names(id2label: Mapping[Any, str] | None, num_labels: int) -> list[str]:
    """The label names in logit order.

    Raises:
        ValueError: a label id is missing or two ids share a name.
    """
    by_id = {int(key): str(value) for key, value in (id2label or {}).items()}
    missing = [i for i in range(num_labels) if i not in by_id]
    if missing:
        raise ValueError(f"config.id2label has no name for label ids {missing}")
    names = [by_id[i] for i in range(num_labels)]
    if len(set(names)) != len(names):
        raise ValueError(f"config.id2label repeats label names: {names}")
    return names


class ClassificationModel(HFModel):
    """A sequence classifier that returns the winning label and every label's probability."""

    def __init__(
        self,
        name: str,
        tokenizer: PreTrainedTokenizerBase,
        module: PreTrainedModel,
        *,
        max_input_tokens: int,
    ) -> None:
        super().__init__(name, Task.CLASSIFICATION, tokenizer, module, max_input_tokens=max_input_tokens)
        config = module.config
        self.labels = label_names(config.id2label, int(config.num_labels or 0))

    def info(self) -> dict[str, Any]:
        """The model's public description, with its labels in logit order."""
        return {**super().info(), "labels": list(self.labels)}

    def _results(self, output: Any, attention_mask: torch.Tensor, batch: Sequence[Encoded]) -> list[Classification]:
        logits = output.logits.float()
        probs: list[list[float]] = torch.softmax(logits, dim=-1).cpu().tolist()
        raw: list[list[float]] = logits.cpu().tolist()
        results = []
        for row, raw_row in zip(probs, raw, strict=True):
            scores = dict(zip(self.labels, row, strict=True))
            best = max(range(len(row)), key=row.__getitem__)
            logit_map = dict(zip(self.labels, raw_row, strict=True))
            results.append(Classification(label=self.labels[best], score=row[best], scores=scores, logits=logit_map))
        return results


class RerankModel(HFModel):
    """A cross-encoder: a sequence classifier with one output, read on (query, text) pairs; returns the logit."""

    def __init__(
        self,
        name: str,
        tokenizer: PreTrainedTokenizerBase,
        module: PreTrainedModel,
        *,
        max_input_tokens: int,
    ) -> None:
        super().__init__(name, Task.RERANK, tokenizer, module, max_input_tokens=max_input_tokens)
        labels = int(module.config.num_labels or 0)
        if labels != 1:
            raise ValueError(f"a rerank model needs a classification head with one output; {name!r} has {labels}")

    def _results(self, output: Any, attention_mask: torch.Tensor, batch: Sequence[Encoded]) -> list[float]:
        scores: list[float] = output.logits.float()[:, 0].cpu().tolist()
        return scores
