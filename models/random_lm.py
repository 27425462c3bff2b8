"""A random-weight GPT-2 small (124M parameters) for benchmarks: real compute per token, meaningless text.

No causal LM with real weights ships on PyPI and the hub is out of reach, so benchmarks build this one on the spot
and save it once. Its tokenizer is a word-level vocabulary of the benchmark's words padded with filler words to
GPT-2's 50,257 entries, so every generated id decodes to text and the LM head has GPT-2's real size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

GPT2_VOCAB = 50257
_EOS = "<|endoftext|>"


def save_random_gpt2(out: str | Path, words: Sequence[str], *, seed: int = 0, layers: int = 12) -> Path:
    """Save a random GPT-2 (GPT-2 small's config unless ``layers`` says otherwise) and its tokenizer into ``out``.

    Does nothing when ``out`` already holds one (it is a cache).
    """
    path = Path(out)
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    known = list(dict.fromkeys(w for w in words if w and w != _EOS))[: GPT2_VOCAB - 2]
    fillers = [f"w{i}" for i in range(GPT2_VOCAB - 2 - len(known))]
    vocab = {token: i for i, token in enumerate(["[UNK]", *known, *fillers, _EOS])}
    engine = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    engine.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    engine.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=engine, eos_token=_EOS, pad_token=_EOS, unk_token="[UNK]", model_max_length=1024
    )
    tokenizer.save_pretrained(path)
    eos = vocab[_EOS]
    config = GPT2Config(vocab_size=GPT2_VOCAB, n_layer=layers, bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path
