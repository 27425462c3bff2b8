"""Causal language models: prompts to token ids, and a batch of sequences decoding together on one KV cache.

``DecodeBatch`` is the step loop's state: rows share one left-padded ``DynamicCache``; new rows are prefilled
on their own and spliced in between steps, finished rows are cut out, so requests join and leave mid-decode.
Left padding with an explicit attention mask and position ids keeps each row's result what it would be alone.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from models.base import Sampling, Task

_WARM_PROMPT = "hello world"


@dataclass(slots=True)
class Row:
    """One sequence in a batch: its prompt, sampling, tokens so far and the token not yet fed to the model."""

    key: object
    prompt: list[int]
    sampling: Sampling
    generated: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None


class GenerationModel:
    """A local causal LM and its tokenizer, on one device; every method runs on the model's own thread."""

    def __init__(
        self, name: str, tokenizer: PreTrainedTokenizerBase, module: PreTrainedModel, *, max_input_tokens: int
    ) -> None:
        self.name = name
        self.task = Task.GENERATION
        self.max_input_tokens = max_input_tokens
        self.tokenizer = tokenizer
        self.module = module
        self._device = module.device
        self.device = str(module.device)
        self.dtype = str(module.dtype).removeprefix("torch.")
        self.eos_ids = _eos_ids(tokenizer, module)
        self.chat_template = bool(getattr(tokenizer, "chat_template", None))

    def info(self) -> dict[str, Any]:
        """The model's public description; ``context_length`` is the most tokens a prompt plus its output may hold."""
        return {
            "id": self.name,
            "task": self.task.value,
            "device": self.device,
            "dtype": self.dtype,
            "max_input_tokens": self.max_input_tokens,
            "context_length": self.max_input_tokens,
            "chat_template": self.chat_template,
            "backend": "torch",
        }

    def encode_prompt(self, prompt: str) -> list[int]:
        """A plain prompt's token ids (with the tokenizer's own leading specials, such as Llama's BOS)."""
        ids: list[int] = self.tokenizer(prompt)["input_ids"]
        return ids

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """A conversation's token ids: the tokenizer's chat template, or ``role: content`` lines without one."""
        if self.chat_template:
            text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
            chat_ids: list[int] = self.tokenizer(str(text), add_special_tokens=False)["input_ids"]
            return chat_ids
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return self.encode_prompt("\n".join([*lines, "assistant:"]))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Each text's token count as a plain prompt."""
        return [len(self.encode_prompt(t)) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids to text, special tokens left out."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def warm_up(self) -> None:
        """Prefill a short prompt and decode two steps, so the first request pays no set-up."""
        batch = DecodeBatch(self)
        batch.add([Row(key=None, prompt=self.encode_prompt(_WARM_PROMPT), sampling=Sampling(max_tokens=2))])
        batch.step()


class DecodeBatch:
    """Rows decoding together on one left-padded KV cache; ``add`` and ``remove`` work between steps."""

    def __init__(self, model: GenerationModel) -> None:
        self.model = model
        self.rows: list[Row] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # [rows, cache width]: 1 where the cache holds a real token

    @property
    def width(self) -> int:
        """Cache positions per row, padding included."""
        return 0 if self._mask is None else int(self._mask.shape[1])

    @property
    def cache_tokens(self) -> int:
        """KV-cache positions held (rows x width): the memory the batch holds now."""
        return len(self.rows) * self.width

    def add(self, rows: Sequence[Row]) -> list[int]:
        """Prefill ``rows`` together, splice them into the batch and return each one's first token."""
        device = self.model._device
        width = max(len(r.prompt) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row.prompt) :] = torch.tensor(row.prompt, dtype=torch.long)
            mask[i, width - len(row.prompt) :] = 1
            if row.sampling.temperature > 0:
                row.generator = torch.Generator(device=device)
                seed = row.sampling.seed if row.sampling.seed is not None else secrets.randbits(63)
                row.generator.manual_seed(seed)
        ids, mask = ids.to(device), mask.to(device)
        cache = DynamicCache()
        logits = self._forward(ids, mask, cache)
        tokens = _pick(logits, rows)
        self._merge(cache, mask)
        for row, token in zip(rows, tokens, strict=True):
            row.generated.append(token)
        self.rows.extend(rows)
        return tokens

    def step(self) -> list[int]:
        """Feed every row its last token and return the next one, per row."""
        if self._cache is None or self._mask is None or not self.rows:
            return []
        device = self.model._device
        last = torch.tensor([[r.generated[-1]] for r in self.rows], dtype=torch.long, device=device)
        self._mask = torch.cat([self._mask, torch.ones((len(self.rows), 1), dtype=torch.long, device=device)], 1)
        logits = self._forward(last, self._mask, self._cache)
        tokens = _pick(logits, self.rows)
        for row, token in zip(self.rows, tokens, strict=True):
            row.generated.append(token)
        return tokens

    def remove(self, keep: Sequence[int]) -> None:
        """Keep only the rows at the indices ``keep`` (in that order); columns no kept row uses are dropped."""
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not self.rows or self._cache is None or self._mask is None:
            self.rows, self._cache, self._mask = [], None, None
            return
        index = torch.tensor(list(keep), dtype=torch.long, device=self._mask.device)
        mask = self._mask.index_select(0, index)
        # Leading columns that are padding in every kept row hold nothing anyone attends to.
        start = int(mask.any(dim=0).to(torch.int8).argmax())
        self._mask = mask[:, start:]
        self._cache = DynamicCache(
            ddp_cache_data=[
                (k.index_select(0, index)[:, :, start:], v.index_select(0, index)[:, :, start:])
                for k, v in _kv(self._cache)
            ]
        )

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        # Positions count real tokens only, so a left-padded row sees the positions it would see alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1] :]
        with torch.inference_mode():
            out = self.model.module(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        logits: torch.Tensor = out.logits[:, -1, :]
        return logits

    def _merge(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append freshly prefilled rows, left-padding whichever side is narrower."""
        if self._cache is None or self._mask is None:
            self._cache, self._mask = cache, mask
            return
        width = max(self.width, int(mask.shape[1]))
        old_pad, new_pad = width - self.width, width - int(mask.shape[1])
        pad = torch.nn.functional.pad
        self._mask = torch.cat([pad(self._mask, (old_pad, 0)), pad(mask, (new_pad, 0))], 0)
        self._cache = DynamicCache(
            ddp_cache_data=[
                (
                    torch.cat([pad(old_k, (0, 0, old_pad, 0)), pad(new_k, (0, 0, new_pad, 0))], 0),
                    torch.cat([pad(old_v, (0, 0, old_pad, 0)), pad(new_v, (0, 0, new_pad, 0))], 0),
                )
                for (old_k, old_v), (new_k, new_v) in zip(_kv(self._cache), _kv(cache), strict=True)
            ]
        )


def _kv(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's key and value tensors ([rows, heads, width, dim]).

    Raises:
        ValueError: a layer is not a plain attention cache (linear attention, sliding windows are not supported).
    """
    pairs = []
    for layer in cache.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
            raise ValueError(f"unsupported cache layer {type(layer).__name__}: continuous batching needs a KV cache")
        pairs.append((keys, values))
    return pairs


def _pick(logits: torch.Tensor, rows: Sequence[Row]) -> list[int]:
    """The next token of each row: argmax for greedy rows, a seeded draw (temperature, top-p) for the others."""
    tokens: list[int] = logits.argmax(dim=-1).tolist()
    for i, row in enumerate(rows):
        s = row.sampling
        if s.temperature <= 0:
            continue
        probs = torch.softmax(logits[i].float() / s.temperature, dim=-1)
        if s.top_p < 1.0:
            ordered, order = probs.sort(descending=True)
            # Keep the smallest head of the distribution whose mass reaches top_p (the top token always).
            drop = ordered.cumsum(0) - ordered >= s.top_p
            ordered = ordered.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(0, order, ordered)
        tokens[i] = int(torch.multinomial(probs, 1, generator=row.generator))
    return tokens


def _eos_ids(tokenizer: PreTrainedTokenizerBase, module: PreTrainedModel) -> frozenset[int]:
    ids: set[int] = set()
    config = getattr(module, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    return frozenset(ids)


def reference_generate(model: GenerationModel, ids: Sequence[int], max_tokens: int) -> list[int]:
    """transformers' own greedy ``generate()`` on one prompt (stopping at EOS): the baseline decoding is checked
    and benchmarked against."""
    prompt = torch.tensor([list(ids)], dtype=torch.long, device=model._device)
    eos = sorted(model.eos_ids) or None
    with torch.inference_mode():
        out = model.module.generate(  # type: ignore[operator]
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=max_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos[0] if eos else 0,
        )
    tokens: list[int] = out[0, prompt.shape[1] :].tolist()
    return tokens
