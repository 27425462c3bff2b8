"""Tiny random-weight BERT models with in-code tokenizers: built offline in well under a second each.

Weights are seeded, so outputs are deterministic but meaningless: tests check plumbing and consistency
(a batch equals its singles, truncation, labels), never quality.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertForSequenceClassification, BertModel, PreTrainedTokenizerFast

MAX_TOKENS = 128
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = (
    "the a an and or not is are was were be to of in on for with this that it "
    "i you he she we they good bad great terrible movie film food service love hate "
    "happy sad fast slow hello world test model server request response token text "
    "stream generate classify embed rank query document cat dog man woman guitar play"
).split()
# Single characters plus "##" continuation pieces let WordPiece cover any ASCII word.
_CHARS = [chr(c) for c in range(33, 127)]
BERT_VOCAB = BERT_SPECIALS + _CHARS + ["##" + c for c in _CHARS] + _WORDS


def build_wordpiece_tokenizer(out: Path) -> PreTrainedTokenizerFast:
    """Save a BERT-style uncased WordPiece fast tokenizer (vocabulary made in code) into ``out``."""
    vocab = {token: i for i, token in enumerate(dict.fromkeys(BERT_VOCAB))}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        model_max_length=MAX_TOKENS,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    fast.save_pretrained(out)
    return fast


def _bert_config(vocab_size: int, pad_id: int, labels: Sequence[str] = ()) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=MAX_TOKENS,
        type_vocab_size=2,
        pad_token_id=pad_id,
        id2label=dict(enumerate(labels)) if labels else None,
        label2id={label: i for i, label in enumerate(labels)} if labels else None,
    )


def make_tiny_bert(out: str | Path, seed: int = 0) -> Path:
    """Save a 2-layer, 32-dim ``BertModel`` encoder and its tokenizer into ``out``."""
    path = Path(out)
    tok = build_wordpiece_tokenizer(path)
    torch.manual_seed(seed)
    BertModel(_bert_config(len(tok), tok.pad_token_id)).save_pretrained(path)
    return path


def make_tiny_classifier(out: str | Path, labels: Sequence[str] = ("NEGATIVE", "POSITIVE"), seed: int = 0) -> Path:
    """Save a tiny ``BertForSequenceClassification`` with ``labels`` and its tokenizer into ``out``."""
    path = Path(out)
    tok = build_wordpiece_tokenizer(path)
    torch.manual_seed(seed)
    BertForSequenceClassification(_bert_config(len(tok), tok.pad_token_id, labels)).save_pretrained(path)
    return path


def make_tiny_cross_encoder(out: str | Path, seed: int = 0) -> Path:
    """Save a tiny one-output ``BertForSequenceClassification`` (a cross-encoder, for rerank) into ``out``."""
    path = Path(out)
    tok = build_wordpiece_tokenizer(path)
    torch.manual_seed(seed)
    BertForSequenceClassification(_bert_config(len(tok), tok.pad_token_id, ("LABEL_0",))).save_pretrained(path)
    return path
