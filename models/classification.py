"""Single-label sequence classification: softmax over the head's logits, every label's probability."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from models._hf import HFModel
from models.base import Classification, Task


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

    def _results(self, output: Any, attention_mask: torch.Tensor) -> list[Classification]:
        probs: list[list[float]] = torch.softmax(output.logits.float(), dim=-1).cpu().tolist()
        results = []
        for row in probs:
            scores = dict(zip(self.labels, row, strict=True))
            best = max(range(len(row)), key=row.__getitem__)
            results.append(Classification(label=self.labels[best], score=row[best], scores=scores))
        return results
