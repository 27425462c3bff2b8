"""Tiny random-weight causal LMs (GPT-2 and Llama style) with a byte-level BPE tokenizer trained in code.

Weights are seeded and initialised wide (``initializer_range``) so that greedy decoding has clear winners and
varied output instead of near-ties: tests compare token sequences exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CONTEXT = 256
_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a long text is cut into chunks and each chunk is summarised",
    "hello world, this is a test of the generation server",
    "tokens stream one by one to the client until the end",
    "Summarise: cats and dogs live together in the house.",
    "chunkserve serves local models behind a batcher; 长文本也可以。",
]
# Llama-3-like template, short enough to read: one header per turn, the assistant header at the end.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _tokenizer(out: Path, *, bos: bool, chat: bool) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|bos|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    if bos:
        bos_id = tok.token_to_id("<|bos|>")
        tok.post_processor = processors.TemplateProcessing(single="<|bos|> $A", special_tokens=[("<|bos|>", bos_id)])
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        model_max_length=CONTEXT,
        eos_token="<|end|>" if chat else "<|endoftext|>",
        bos_token="<|bos|>" if bos else None,
        pad_token="<|endoftext|>",
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def make_tiny_gpt2(out: str | Path, seed: int = 0) -> Path:
    """Save a 2-layer, 64-dim GPT-2 with a plain-prompt tokenizer (no chat template) into ``out``."""
    path = Path(out)
    tok = _tokenizer(path, bos=False, chat=False)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=CONTEXT,
        n_embd=64,
        n_layer=2,
        n_head=2,
        initializer_range=0.3,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def make_tiny_llama(out: str | Path, seed: int = 0) -> Path:
    """Save a 2-layer, 64-dim Llama (grouped-query attention, RoPE) with a chat template into ``out``."""
    path = Path(out)
    tok = _tokenizer(path, bos=True, chat=True)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT,
        initializer_range=0.3,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    return path
