"""Split a text into chunks by characters, by sentences and paragraphs, or by model tokens. Pure functions.

With no overlap the chunks tile the text: joining them gives it back. With overlap, each chunk after the first
also repeats the end of the chunk before it. ``chars`` cuts raw code points at fixed offsets; ``sentences`` and
``tokens`` cut at sentence, paragraph and word boundaries, and inside a word they avoid splitting a grapheme
cluster (combining marks, ZWJ emoji, skin tones, flags) unless that cluster alone is over the budget. Those
boundaries come from ``service/jobs/text_bounds.py``; this module decides how much text goes in each chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from service.errors import InputTooLarge, InvalidInput
from service.jobs.text_bounds import back_to_cluster, forward_to_cluster, overlap_start, sentences, words

Measure = Callable[[str], int]
# (start, end, cost, rank): cost excludes the tokenizer's specials; rank 2 ends a paragraph, 1 a line, 0 otherwise.
_Unit = tuple[int, int, int, int]


class Strategy(StrEnum):
    """How a text is cut."""

    CHARS = "chars"
    SENTENCES = "sentences"
    TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of the source text: ``text == source[start:end]``."""

    index: int
    start: int
    end: int
    text: str


class _Chars:
    """Measures spans in code points."""

    specials = 0

    def __init__(self, text: str) -> None:
        self.text = text

    def cost(self, start: int, end: int) -> int:
        """Length of ``text[start:end]``."""
        return end - start

    def longest(self, start: int, end: int, limit: int) -> int:
        """The furthest stop in (start, end] whose span fits ``limit``."""
        return min(end, start + limit)


class _Tokens:
    """Measures spans with a tokenizer's counter; ``specials`` is what it adds to any text (CLS, SEP...)."""

    def __init__(self, text: str, measure: Measure) -> None:
        self.text = text
        self.measure = measure
        self.specials = measure("")

    def cost(self, start: int, end: int) -> int:
        """Tokens of ``text[start:end]`` without the specials."""
        return self.measure(self.text[start:end]) - self.specials

    def longest(self, start: int, end: int, limit: int) -> int:
        """The furthest stop in (start, end] whose span fits ``limit``, or ``start`` when none does."""
        # Gallop then bisect, so a long span costs O(log n) counts of about the piece's length, not of the rest.
        lo, hi, reach = start, end, max(1, limit)
        while lo < hi:
            probe = min(end, lo + reach)
            if self.cost(start, probe) + self.specials > limit:
                hi = probe - 1
                break
            lo, reach = probe, reach * 2
        return _first(lo + 1, hi + 1, lambda stop: self.cost(start, stop) + self.specials > limit) - 1


_Meter = _Chars | _Tokens


def _first(lo: int, hi: int, ok: Callable[[int], bool]) -> int:
    """The smallest x in [lo, hi) with ``ok(x)`` for a predicate that stays true once true; ``hi`` if none."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _hard_split(meter: _Meter, start: int, end: int, limit: int, size: int) -> Iterator[tuple[int, int]]:
    """Cut [start, end) into the longest pieces that fit ``limit``, at cluster boundaries when possible.

    Raises:
        InvalidInput: one character alone is over ``size`` tokens.
    """
    text = meter.text
    while start < end:
        stop = meter.longest(start, end, limit)
        if start < stop < end:
            back = back_to_cluster(text, stop, start)
            if back != stop and meter.cost(start, back) + meter.specials <= limit:
                stop = back
        elif stop == start:
            # Nothing fits the share left after the overlap; a single cluster may still fit the whole size.
            stop = forward_to_cluster(text, start + 1, end)
            if meter.cost(start, stop) + meter.specials > size:
                stop = start + 1
                tokens = meter.cost(start, stop) + meter.specials
                if tokens > size:
                    raise InvalidInput(
                        f"chunk_size={size} tokens cannot hold {text[start]!r}, which alone counts {tokens} tokens; "
                        "raise chunk_size",
                        field="chunk_size",
                    )
        yield start, stop
        start = stop


def _units(meter: _Meter, limit: int, size: int, lo: int, hi: int) -> Iterator[_Unit]:
    """Sentences that fit ``limit``; words of a sentence that does not; hard pieces of a word that does not."""
    text, specials = meter.text, meter.specials
    for s_start, s_end, rank in sentences(text, lo, hi):
        cost = meter.cost(s_start, s_end)
        if cost + specials <= limit:
            yield s_start, s_end, cost, rank
            continue
        for w_start, w_end in words(text, s_start, s_end):
            cost = meter.cost(w_start, w_end)
            if cost + specials <= limit:
                yield w_start, w_end, cost, rank if w_end == s_end else 0
                continue
            for p_start, p_end in _hard_split(meter, w_start, w_end, limit, size):
                yield p_start, p_end, meter.cost(p_start, p_end), rank if p_end == s_end else 0


def _pack(units: Iterable[_Unit], limit: int, specials: int) -> Iterator[tuple[int, int]]:
    """Join units while their summed cost fits; on overflow prefer a paragraph, then a line break, past half way."""
    start = end = 0
    used = specials
    breaks: dict[int, tuple[int, int]] = {}  # rank -> (position, used up to it): the latest in the current chunk
    for u_start, u_end, cost, rank in units:
        while end > start and used + cost > limit:
            cut = next((breaks[r] for r in (2, 1) if r in breaks and 2 * breaks[r][1] >= limit + specials), None)
            if cut is None or cut[0] >= end:
                yield start, end
                start, used = end, specials
                breaks.clear()
                continue
            yield start, cut[0]
            start, used = cut[0], used - cut[1] + specials
            breaks = {r: (p, at - cut[1] + specials) for r, (p, at) in breaks.items() if p > start}
        start = start if end > start else u_start
        end, used = u_end, used + cost
        if rank:
            breaks[rank] = (end, used)
    if end > start:
        yield start, end


def _pack_tokens(meter: _Tokens, limit: int, size: int) -> Iterator[tuple[int, int]]:
    """Pack by summed unit counts, then count each chunk once; the rare chunk that is over is re-packed exactly."""
    for start, end in _pack(_units(meter, limit, size, 0, len(meter.text)), limit, meter.specials):
        if meter.cost(start, end) + meter.specials <= limit:
            yield start, end
            continue
        # Counts do not always add up across a seam (merges, normalization): grow by real counts instead.
        units = _units(meter, limit, size, start, end)
        cur_start, cur_end, _, _ = next(units)
        for _, u_end, _, _ in units:
            if meter.cost(cur_start, u_end) + meter.specials <= limit:
                cur_end = u_end
            else:
                yield cur_start, cur_end
                cur_start, cur_end = cur_end, u_end
        yield cur_start, cur_end


def _token_overlap_start(meter: _Tokens, prev_start: int, start: int, end: int, overlap: int, size: int) -> int:
    """The earliest start after ``prev_start`` that repeats at most ``overlap`` tokens and keeps the chunk in size."""
    text, specials = meter.text, meter.specials
    begin = overlap_start(text, _first(prev_start + 1, start, lambda p: meter.cost(p, start) <= overlap), start)
    if begin < start and meter.cost(begin, end) + specials > size:
        begin = overlap_start(text, _first(begin + 1, start, lambda p: meter.cost(p, end) + specials <= size), start)
        if begin < start and meter.cost(begin, end) + specials > size:
            begin = start
    return begin


def chunk_text(
    text: str,
    *,
    strategy: Strategy | str = Strategy.SENTENCES,
    size: int = 500,
    overlap: int = 0,
    count_tokens: Measure | None = None,
    max_chunks: int | None = None,
) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``size`` characters (tokens, for ``tokens``), ``overlap`` repeated.

    Raises:
        InvalidInput: ``size`` <= 0, ``overlap`` outside [0, size), an unknown strategy, ``tokens`` without a
            token counter, or a character that alone counts more than ``size`` tokens.
        InputTooLarge: the text would make more than ``max_chunks`` chunks.
    """
    try:
        strategy = Strategy(strategy)
    except ValueError:
        known = ", ".join(Strategy)
        raise InvalidInput(f"chunking must be one of {known}, got {strategy!r}", field="chunking") from None
    if size <= 0:
        raise InvalidInput(f"chunk_size must be > 0, got {size}", field="chunk_size")
    if not 0 <= overlap < size:
        raise InvalidInput(f"overlap must be >= 0 and smaller than chunk_size ({size}), got {overlap}", field="overlap")
    if strategy is Strategy.TOKENS and count_tokens is None:
        raise InvalidInput("the tokens strategy needs a local model's tokenizer to count tokens", field="chunking")
    if not text:
        return []
    # Each chunk's own part gets size - overlap, so that with the part it repeats it still fits in size.
    step = size - overlap
    meter: _Meter
    if strategy is Strategy.CHARS:
        source: Iterator[tuple[int, int]] = (
            (i, min(len(text), i + size)) for i in range(0, max(1, len(text) - overlap), step)
        )
    elif strategy is Strategy.TOKENS:
        if count_tokens is None:
            raise ValueError("chunking by tokens needs count_tokens (the model's tokenizer)")
        meter = _Tokens(text, count_tokens)
        source = _pack_tokens(meter, step, size)
    else:
        meter = _Chars(text)
        source = _pack(_units(meter, step, size, 0, len(text)), step, 0)
    spans: list[tuple[int, int]] = []
    for span in source:
        spans.append(span)
        if max_chunks is not None and len(spans) > max_chunks:
            about = max(len(spans), round(len(spans) * len(text) / span[1]))
            raise InputTooLarge(
                f"the text would make about {about} chunks at chunk_size={size}, over the limit of {max_chunks}; "
                "raise chunk_size or send less text",
                field="chunk_size",
            )
    if overlap and strategy is not Strategy.CHARS:
        for i in range(1, len(spans)):
            (prev_start, _), (start, end) = spans[i - 1], spans[i]
            if isinstance(meter, _Tokens):
                start = _token_overlap_start(meter, prev_start, start, end, overlap, size)
            else:
                start = overlap_start(text, max(start - overlap, prev_start + 1), start)
            spans[i] = (start, end)
    return [Chunk(i, start, end, text[start:end]) for i, (start, end) in enumerate(spans)]
