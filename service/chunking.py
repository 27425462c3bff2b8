"""Split a text into chunks: by characters, by sentences and paragraphs, or by model tokens. Pure functions.

Every strategy keeps every character: with no overlap, joining the chunks gives back the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from service.errors import InputTooLarge, InvalidInput

# A sentence ends at terminal punctuation (Western, CJK and fullwidth), plus closing quotes/brackets and the
# whitespace after it; a paragraph ends at a newline run.
_SENTENCE_END = re.compile(r"(?:[.!?…。！？；;．]+[\"'”’)\]」』》】]*\s*|\n\s*)")
_WORD = re.compile(r"\s*\S+\s*|\s+")


class Strategy(StrEnum):
    """How a text is cut."""

    CHARS = "chars"
    SENTENCES = "sentences"
    TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class Chunk:
    """``text == source[start:end]``."""

    index: int
    start: int
    end: int
    text: str


Measure = Callable[[str], int]


def _sentences(text: str) -> Iterator[tuple[int, int]]:
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if end > start:
            yield start, end
            start = end
    if start < len(text):
        yield start, len(text)


def _words(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    for match in _WORD.finditer(text, start, end):
        yield match.start(), match.end()


def _fits(text: str, start: int, end: int, limit: int, measure: Measure | None) -> bool:
    return (end - start if measure is None else measure(text[start:end])) <= limit


def _hard_split(text: str, start: int, end: int, limit: int, measure: Measure | None) -> Iterator[tuple[int, int]]:
    """Cut [start, end) into the longest prefixes that fit (binary search when measuring tokens)."""
    while start < end:
        if measure is None:
            stop = min(end, start + limit)
        else:
            lo, hi = start + 1, end
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if measure(text[start:mid]) <= limit:
                    lo = mid
                else:
                    hi = mid - 1
            stop = lo
        yield start, stop
        start = stop


def _units(text: str, limit: int, measure: Measure | None) -> Iterator[tuple[int, int]]:
    """Sentences, then words for an over-long sentence, then hard cuts for an over-long word."""
    for s_start, s_end in _sentences(text):
        if _fits(text, s_start, s_end, limit, measure):
            yield s_start, s_end
            continue
        for w_start, w_end in _words(text, s_start, s_end):
            if _fits(text, w_start, w_end, limit, measure):
                yield w_start, w_end
            else:
                yield from _hard_split(text, w_start, w_end, limit, measure)


def _pack(text: str, limit: int, measure: Measure | None, exact: bool = False) -> Iterator[tuple[int, int]]:
    """Greedily join consecutive units while the joined span still fits.

    Token counts are summed per unit (nearly additive at word boundaries); ``exact`` re-counts every growth.
    """
    cur_start = cur_end = 0
    used = 0
    specials = measure("") if measure is not None else 0
    for start, end in _units(text, limit, measure):
        cost = end - start if measure is None else max(0, measure(text[start:end]) - specials)
        if cur_end > cur_start:
            grown = used + cost <= limit
            if grown and exact and measure is not None:
                grown = measure(text[cur_start:end]) <= limit
            if grown:
                cur_end, used = end, used + cost
                continue
            yield cur_start, cur_end
        cur_start, cur_end, used = start, end, cost + specials
    if cur_end > cur_start:
        yield cur_start, cur_end


def _pack_tokens(text: str, limit: int, measure: Measure) -> Iterator[tuple[int, int]]:
    """Pack by summed counts, then check each chunk once; the rare chunk that is over is re-packed exactly."""
    for start, end in _pack(text, limit, measure):
        if measure(text[start:end]) <= limit:
            yield start, end
        else:
            for s, e in _pack(text[start:end], limit, measure, exact=True):
                yield start + s, start + e


def _token_overlap(
    text: str, spans: list[tuple[int, int]], overlap: int, size: int, measure: Measure
) -> list[tuple[int, int]]:
    """Start each chunk after the first as early as ``overlap`` tokens allow without going over ``size``."""
    out = spans[:1]
    for start, end in spans[1:]:
        lo, hi = out[-1][0] + 1, start
        while lo < hi:  # smallest start whose overlap and whole chunk still fit
            mid = (lo + hi) // 2
            if measure(text[mid:start]) <= overlap and measure(text[mid:end]) <= size:
                hi = mid
            else:
                lo = mid + 1
        out.append((lo, end))
    return out


def _with_overlap(text: str, spans: list[tuple[int, int]], overlap: int) -> list[tuple[int, int]]:
    """Start each chunk after the first up to ``overlap`` characters early, at a word boundary when one exists."""
    out = spans[:1]
    for start, end in spans[1:]:
        back = max(start - overlap, out[-1][0] + 1)
        space = text.find(" ", back, start)
        out.append((space + 1 if 0 <= space < start - 1 else back, end))
    return out


def chunk_text(
    text: str,
    *,
    strategy: Strategy = Strategy.SENTENCES,
    size: int = 500,
    overlap: int = 0,
    count_tokens: Measure | None = None,
    max_chunks: int | None = None,
) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``size`` characters (or tokens, for ``tokens``).

    Raises:
        InvalidInput: ``size`` <= 0, ``overlap`` outside [0, size), or ``tokens`` without a token counter.
        InputTooLarge: the text would make more than ``max_chunks`` chunks.
    """
    if size <= 0:
        raise InvalidInput(f"chunk_size must be > 0, got {size}", field="chunk_size")
    if not 0 <= overlap < size:
        raise InvalidInput(f"overlap must be >= 0 and smaller than chunk_size ({size}), got {overlap}", field="overlap")
    if strategy is Strategy.TOKENS and count_tokens is None:
        raise InvalidInput("the tokens strategy needs a local model's tokenizer", field="chunking")
    if not text:
        return []
    step = size - overlap
    spans: list[tuple[int, int]] = []
    if strategy is Strategy.CHARS:
        source: Iterator[tuple[int, int]] = (
            (i, min(len(text), i + size)) for i in range(0, max(1, len(text) - overlap), step)
        )
    elif strategy is Strategy.TOKENS:
        assert count_tokens is not None
        # Overlap is taken out of each chunk's budget so that a chunk with its overlap still fits in ``size``.
        source = _pack_tokens(text, step, count_tokens)
    else:
        source = _pack(text, step, None)
    for span in source:
        spans.append(span)
        if max_chunks is not None and len(spans) > max_chunks:
            raise InputTooLarge(
                f"the text makes more than {max_chunks} chunks at chunk_size={size}; "
                "raise chunk_size or send less text",
                field="chunk_size",
            )
    if overlap and strategy is Strategy.SENTENCES:
        spans = _with_overlap(text, spans, overlap)
    elif overlap and strategy is Strategy.TOKENS:
        assert count_tokens is not None
        spans = _token_overlap(text, spans, overlap, size, count_tokens)
    return [Chunk(i, start, end, text[start:end]) for i, (start, end) in enumerate(spans)]
