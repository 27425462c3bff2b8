"""Chunking invariants: every character kept, sizes bounded, CJK and emoji safe."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.chunking import Strategy, chunk_text
from service.errors import InputTooLarge, InvalidInput

ALPHABET = st.sampled_from(
    list("abc xyz.!?\n\t,;") + list("你好世界。！？；「」") + ["👍", "👨‍👩‍👧", "e\u0301", "  ", "\n\n", "…", "Ü"]
)
TEXTS = st.lists(ALPHABET, max_size=300).map("".join)


def words(text: str) -> int:
    return len(text.split()) + 2  # a fake tokenizer: whitespace words plus two specials


def _check(text: str, chunks: list, overlap: int) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.text and c.text == text[c.start : c.end] for c in chunks)
    if overlap == 0:
        assert "".join(c.text for c in chunks) == text
        assert all(a.end == b.start for a, b in itertools.pairwise(chunks))
    else:
        assert chunks[0].start == 0 and chunks[-1].end == len(text)
        assert all(b.start <= a.end and b.start > a.start for a, b in itertools.pairwise(chunks))


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, size=st.integers(1, 40), strategy=st.sampled_from([Strategy.CHARS, Strategy.SENTENCES]))
def test_character_strategies_keep_every_character(text: str, size: int, strategy: Strategy) -> None:
    chunks = chunk_text(text, strategy=strategy, size=size)
    _check(text, chunks, 0)
    assert all(len(c.text) <= size for c in chunks)


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, size=st.integers(2, 40), data=st.data())
def test_overlap_covers_everything_within_size(text: str, size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, size - 1))
    for strategy in (Strategy.CHARS, Strategy.SENTENCES):
        chunks = chunk_text(text, strategy=strategy, size=size, overlap=overlap)
        if text:
            _check(text, chunks, overlap)
        assert all(len(c.text) <= size for c in chunks)


@settings(max_examples=150, deadline=None)
@given(text=TEXTS, size=st.integers(3, 30), data=st.data())
def test_token_chunks_fit_the_tokenizer(text: str, size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, size - 1))
    chunks = chunk_text(text, strategy=Strategy.TOKENS, size=size, overlap=overlap, count_tokens=words)
    if text:
        _check(text, chunks, overlap)
    assert all(words(c.text) <= size for c in chunks)


def test_classic_chars_split_matches_the_classic_example() -> None:
    text = "abcdefghij" * 7
    assert [c.text for c in chunk_text(text, strategy=Strategy.CHARS, size=16)] == [
        text[i : i + 16] for i in range(0, len(text), 16)
    ]


def test_sentences_pack_whole_sentences() -> None:
    text = "First one. Second one! Third one? Fourth."
    assert [c.text for c in chunk_text(text, size=24)] == ["First one. Second one! ", "Third one? Fourth."]


def test_chinese_punctuation_ends_sentences() -> None:
    text = "你好。今天天气很好！我们去公园吧？好的；走吧"
    assert [c.text for c in chunk_text(text, size=8)] == ["你好。", "今天天气很好！", "我们去公园吧？", "好的；走吧"]


def test_long_sentence_splits_at_words_then_hard() -> None:
    text = "alpha beta gamma delta " + "x" * 25
    chunks = [c.text for c in chunk_text(text, size=12)]
    assert chunks[:2] == ["alpha beta ", "gamma delta "]
    assert "".join(chunks) == text
    assert all(len(c) <= 12 for c in chunks)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"size": 0}, "chunk_size"),
        ({"size": 5, "overlap": 5}, "overlap"),
        ({"size": 5, "overlap": -1}, "overlap"),
        ({"size": 5, "strategy": Strategy.TOKENS}, "chunking"),
    ],
)
def test_bad_parameters_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        chunk_text("some text", **kwargs)
    assert info.value.field == field


def test_too_many_chunks_stops_early() -> None:
    with pytest.raises(InputTooLarge) as info:
        chunk_text("x" * 10_000_000, strategy=Strategy.CHARS, size=1, max_chunks=100)
    assert info.value.field == "chunk_size"


def test_empty_and_whitespace_only() -> None:
    assert chunk_text("") == []
    assert "".join(c.text for c in chunk_text("   \n\n  \t ", size=3)) == "   \n\n  \t "
