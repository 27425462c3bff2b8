"""Text embeddings: encoder hidden states pooled (mean or CLS) and L2-normalised, as sentence-transformers does."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from models._hf import HFModel
from models.base import Encoded, Task

PoolingMode = Literal["mean", "cls"]

_SUPPORTED_MODES: dict[str, PoolingMode] = {"mean": "mean", "cls": "cls"}
_LEGACY_MODE_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_SUPPORTED_MODULES = {"Transformer", "Pooling", "Normalize"}


@dataclass(frozen=True, slots=True)
class Pooling:
    """How token states become one vector: the pooling mode and whether the result is L2-normalised."""

    mode: PoolingMode = "mean"
    normalize: bool = True


def read_pooling(root: Path) -> Pooling:
    """The pooling a sentence-transformers directory declares; mean + normalise for a plain encoder.

    Raises:
        ValueError: the directory declares modules or a pooling mode this implementation would get wrong.
    """
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        return Pooling()
    modules: list[dict[str, Any]] = json.loads(modules_file.read_text(encoding="utf-8"))
    kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules}
    unsupported = sorted(set(kinds) - _SUPPORTED_MODULES)
    if unsupported:
        raise ValueError(
            f"{modules_file} uses sentence-transformers modules {unsupported}; only "
            f"{sorted(_SUPPORTED_MODULES)} are supported"
        )
    normalize = "Normalize" in kinds
    if "Pooling" not in kinds:
        return Pooling(normalize=normalize)
    config_file = root / str(kinds["Pooling"].get("path", "")) / "config.json"
    config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
    declared = config.get("pooling_mode")
    if declared is None:
        declared = [mode for key, mode in _LEGACY_MODE_KEYS.items() if config.get(key)]
    modes = [declared] if isinstance(declared, str) else list(declared)
    if len(modes) != 1 or modes[0] not in _SUPPORTED_MODES:
        raise ValueError(f"{config_file} asks for pooling {modes}; only 'mean' or 'cls' alone is supported")
    return Pooling(mode=_SUPPORTED_MODES[modes[0]], normalize=normalize)


class EmbeddingModel(HFModel):
    """An encoder that returns one float32 vector per input."""

    def __init__(
        self,
        name: str,
        tokenizer: PreTrainedTokenizerBase,
        module: PreTrainedModel,
        *,
        max_input_tokens: int,
        pooling: Pooling = Pooling(),
    ) -> None:
        super().__init__(name, Task.EMBEDDING, tokenizer, module, max_input_tokens=max_input_tokens)
        self.pooling = pooling
        self.dimensions = int(module.config.hidden_size)

    def info(self) -> dict[str, Any]:
        """The model's public description, with its vector size."""
        return {**super().info(), "dimensions": self.dimensions}

    def _results(
        self, output: Any, attention_mask: torch.Tensor, batch: Sequence[Encoded]
    ) -> list[npt.NDArray[np.float32]]:
        # Pool in fp32 whatever the model ran in: half-precision sums over 256 tokens lose digits.
        hidden = output.last_hidden_state.float()
        if self.pooling.mode == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        wanted = [self.pooling.normalize if enc.normalize is None else enc.normalize for enc in batch]
        if all(wanted):
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        elif any(wanted):
            rows = torch.tensor(wanted, device=pooled.device).unsqueeze(-1)
            pooled = torch.where(rows, torch.nn.functional.normalize(pooled, p=2.0, dim=1), pooled)
        array: npt.NDArray[np.float32] = pooled.cpu().numpy()
        results = list(array)
        if any(enc.all_tokens for enc in batch):
            states: npt.NDArray[np.float32] = hidden.cpu().numpy()
            for row, enc in enumerate(batch):
                if enc.all_tokens:  # every token's state, unpooled and unnormalised (TEI's /embed_all)
                    results[row] = states[row, : enc.length]
        return results
