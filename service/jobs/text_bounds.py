"""Where a text may be cut: sentence and paragraph ends, word starts and grapheme-cluster boundaries.

Pure functions over a string and offsets, with no budget or tokenizer: ``service/jobs/chunking.py`` decides how much
goes in a chunk, this module only says where a cut does not break a sentence, a word or a character cluster.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

_CLOSERS = "\"'”’)\\]}»›」』》〉】〕）］｝〗〙〛"
_SENTENCE_END = re.compile(
    # Western marks end a sentence only before whitespace, so "3.14" and "example.com" stay whole.
    # The lookbehinds and possessive runs keep a long run of marks or newlines from being rescanned (quadratic).
    rf"(?<![.!?…‼⁇⁈⁉؟।॥])[.!?…‼⁇⁈⁉؟।॥]++[{_CLOSERS}]*+(?:\s++|\Z)"
    rf"|[。！？；．｡︒]++[{_CLOSERS}]*+\s*+"
    r"|[\n\r\u2028\u2029\x85]\s*+"
)
_NEWLINE = re.compile(r"\r\n?|[\n\u2028\u2029\x85]")
_WORD = re.compile(r"\s*\S+\s*|\s+")
_WORD_START = re.compile(r"(?<=\s)\S")
_RI_FIRST, _RI_LAST = "\U0001f1e6", "\U0001f1ff"


def _joined(text: str, pos: int) -> bool:
    """Whether ``text[pos]`` belongs to the grapheme cluster of ``text[pos - 1]`` (a cheap approximation)."""
    ch, prev = text[pos], text[pos - 1]
    if ch == "\u200d" or prev == "\u200d" or (prev == "\r" and ch == "\n"):
        return True
    if "\U0001f3fb" <= ch <= "\U0001f3ff" or "\U000e0020" <= ch <= "\U000e007f":
        return True
    if _RI_FIRST <= ch <= _RI_LAST and _RI_FIRST <= prev <= _RI_LAST:
        run, stop = pos - 1, max(0, pos - 16)  # flags pair up from the run's start; a short look is enough
        while run > stop and _RI_FIRST <= text[run - 1] <= _RI_LAST:
            run -= 1
        return (pos - run) % 2 == 1
    return unicodedata.category(ch)[0] == "M"


def back_to_cluster(text: str, pos: int, lo: int) -> int:
    """``pos`` moved back to a cluster boundary after ``lo``; ``pos`` itself when one cluster fills (lo, pos]."""
    p = pos
    while p > lo and _joined(text, p):
        p -= 1
    return p if p > lo else pos


def forward_to_cluster(text: str, pos: int, hi: int) -> int:
    """``pos`` moved forward to a cluster boundary, at most to ``hi``."""
    while pos < hi and _joined(text, pos):
        pos += 1
    return pos


def overlap_start(text: str, back: int, start: int) -> int:
    """The first word start in [back, start), else the first cluster boundary there; ``start`` means no overlap."""
    found = _WORD_START.search(text, back, start)
    return forward_to_cluster(text, found.start() if found else back, start)


def sentences(text: str, lo: int, hi: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, rank) of each sentence or paragraph in [lo, hi), with its closing quotes and whitespace."""
    start = lo
    for match in _SENTENCE_END.finditer(text, lo, hi):
        yield start, match.end(), min(2, len(_NEWLINE.findall(match.group())))
        start = match.end()
    if start < hi:
        yield start, hi, 0


def words(text: str, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each word in [lo, hi) with the whitespace around it; together they tile [lo, hi)."""
    for match in _WORD.finditer(text, lo, hi):
        yield match.span()
