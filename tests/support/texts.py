"""Texts that exercise a tokenizer's corners: short, long (over the window), CJK, emoji, empty, accents, code."""

from __future__ import annotations

MIXED_TEXTS = [
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    "Chunking long documents keeps every piece inside the encoder's window. " * 30,
    "今天天气很好，我们去公园散步吧。",
    "Great news 🎉🚀 see you soon 😀",
    "",
    "Résumé of a naïve café owner in Zürich",
    "def f(x):\n    return x * 2  # code, not prose",
]
