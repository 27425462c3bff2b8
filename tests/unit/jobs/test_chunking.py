"""chunk_text: examples per strategy, parameter errors, limits, and property tests of the invariants."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from service.errors import InputTooLarge, InvalidInput
from service.jobs.chunking import Chunk, Strategy, chunk_text

FAMILY = "👨\u200d👩\u200d👧"
THUMBS = "👍🏽"
FLAG = "🇯🇵"
E_ACUTE = "e\u0301"


def fake_count(text: str) -> int:
    """A fake tokenizer: whitespace words plus two special tokens."""
    return len(text.split()) + 2


def _build_wordpiece() -> Tokenizer:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(33, 127)]
    words = "the a and of to is in it that this model server text token chunk long short".split()
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + chars + ["##" + c for c in chars] + words))}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return tok


WORDPIECE = _build_wordpiece()


def wordpiece_count(text: str) -> int:
    """Tokens of a tiny in-memory BERT WordPiece tokenizer, [CLS] and [SEP] included."""
    return len(WORDPIECE.encode(text).ids)


def texts(chunks: list[Chunk]) -> list[str]:
    return [c.text for c in chunks]


def check_invariants(text: str, chunks: list[Chunk], overlap: int) -> None:
    """In order, indexed, faithful to the source, never empty; tiling without overlap, covering with it."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.text and c.text == text[c.start : c.end] for c in chunks)
    if not text:
        assert chunks == []
        return
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text)
    for a, b in itertools.pairwise(chunks):
        assert a.start < b.start <= a.end < b.end
    if overlap == 0:
        assert "".join(texts(chunks)) == text
        assert all(a.end == b.start for a, b in itertools.pairwise(chunks))


def inside_cluster(chunks: list[Chunk], text: str, cluster: str) -> bool:
    """Whether any chunk boundary falls strictly inside an occurrence of ``cluster``."""
    cuts = {c.start for c in chunks} | {c.end for c in chunks}
    at = text.find(cluster)
    while at >= 0:
        if any(at < cut < at + len(cluster) for cut in cuts):
            return True
        at = text.find(cluster, at + 1)
    return False


# --- examples: chars -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 3, 7, 16, 100])
def test_chars_without_overlap_is_the_classic_split(size: int) -> None:
    text = "abcdefghij" * 7 + FAMILY + "你好。"
    assert texts(chunk_text(text, strategy=Strategy.CHARS, size=size)) == [
        text[i : i + size] for i in range(0, len(text), size)
    ]


def test_chars_with_overlap_slides_by_size_minus_overlap() -> None:
    assert texts(chunk_text("abcdefghij", strategy="chars", size=4, overlap=1)) == ["abcd", "defg", "ghij"]


# --- examples: sentences ---------------------------------------------------------------------------------------


def test_sentences_pack_whole_sentences() -> None:
    text = "First one. Second one! Third one? Fourth."
    assert texts(chunk_text(text, size=24)) == ["First one. Second one! ", "Third one? Fourth."]


def test_sentences_prefer_a_paragraph_break_over_a_later_sentence_end() -> None:
    text = "Para one has two. Sentences here.\n\nPara two starts. And it goes on. Then more."
    chunks = texts(chunk_text(text, size=60))
    assert chunks[0] == "Para one has two. Sentences here.\n\n"
    assert "".join(chunks) == text


def test_decimals_and_domains_do_not_end_a_sentence() -> None:
    text = "Pi is 3.14 and example.com is a site. Next one."
    assert texts(chunk_text(text, size=40)) == ["Pi is 3.14 and example.com is a site. ", "Next one."]


def test_chinese_sentences_end_at_cjk_punctuation() -> None:
    text = "你好。今天天气很好！我们去公园吧？好的；走吧"
    assert texts(chunk_text(text, size=8)) == ["你好。", "今天天气很好！", "我们去公园吧？", "好的；走吧"]


def test_closing_brackets_and_quotes_stay_with_their_sentence() -> None:
    text = "「你好。」他说。今天很好！"
    assert texts(chunk_text(text, size=5)) == ["「你好。」", "他说。", "今天很好！"]
    english = 'He said "Stop!" Then he left.'
    assert texts(chunk_text(english, size=16)) == ['He said "Stop!" ', "Then he left."]


def test_japanese_sentences_pack_up_to_size() -> None:
    text = "今日は晴れです。明日は雨でしょう？「そうですね」と彼は言った。"
    chunks = texts(chunk_text(text, size=17))
    assert chunks == ["今日は晴れです。明日は雨でしょう？", "「そうですね」と彼は言った。"]


def test_long_sentence_splits_at_spaces() -> None:
    text = "alpha beta gamma delta epsilon"
    assert texts(chunk_text(text, size=12)) == ["alpha beta ", "gamma delta ", "epsilon"]


def test_long_word_splits_hard() -> None:
    text = "short " + "x" * 25
    assert texts(chunk_text(text, size=10)) == ["short ", "x" * 10, "x" * 10, "x" * 5]


def test_hard_split_keeps_emoji_and_combining_clusters_whole() -> None:
    text = "xxx" + FAMILY + "yy" + THUMBS + FLAG + FLAG + E_ACUTE * 4
    chunks = chunk_text(text, size=6)
    check_invariants(text, chunks, 0)
    for cluster in (FAMILY, THUMBS, FLAG, E_ACUTE):
        assert not inside_cluster(chunks, text, cluster), cluster


def test_a_cluster_longer_than_size_is_still_split() -> None:
    text = "a" + "\u0301" * 9
    assert texts(chunk_text(text, size=4)) == [text[:4], text[4:8], text[8:]]


def test_sentence_overlap_starts_at_a_word_boundary() -> None:
    text = "one two three four. five six seven eight. nine ten eleven twelve."
    chunks = chunk_text(text, size=30, overlap=10)
    check_invariants(text, chunks, 10)
    assert all(len(c.text) <= 30 for c in chunks)
    for a, b in itertools.pairwise(chunks):
        assert 0 < a.end - b.start <= 10
        assert text[b.start - 1] == " "


def test_whitespace_only_text_is_kept() -> None:
    text = "   \n\n  \t \u3000 "
    for strategy in Strategy:
        chunks = chunk_text(text, strategy=strategy, size=3, count_tokens=fake_count)
        assert "".join(texts(chunks)) == text


def test_empty_text_makes_no_chunks() -> None:
    assert chunk_text("") == []
    assert chunk_text("", strategy=Strategy.TOKENS, count_tokens=fake_count) == []


# --- examples: tokens ------------------------------------------------------------------------------------------


def test_tokens_pack_words_under_a_fake_count() -> None:
    text = "one two three. four five six seven eight nine. ten"
    chunks = chunk_text(text, strategy=Strategy.TOKENS, size=6, count_tokens=fake_count)
    check_invariants(text, chunks, 0)
    assert texts(chunks) == ["one two three. four ", "five six seven eight ", "nine. ten"]


def test_tokens_never_exceed_a_real_tokenizer_limit() -> None:
    text = " ".join(f"The model{i} reads chunk number {i} of this long text, and it is short." for i in range(60))
    for overlap in (0, 8):
        chunks = chunk_text(text, strategy=Strategy.TOKENS, size=32, overlap=overlap, count_tokens=wordpiece_count)
        check_invariants(text, chunks, overlap)
        counts = [wordpiece_count(c.text) for c in chunks]
        assert max(counts) <= 32
        assert sum(counts) / len(counts) > 20  # packed, not one sentence each


def test_tokens_recount_when_counts_do_not_add_up() -> None:
    def superadditive(text: str) -> int:
        return len(text) // 4 + 1  # a joined span counts more than its parts summed

    text = "abc def ghi jkl mno pqr stu vwx yz. " * 20
    chunks = chunk_text(text, strategy=Strategy.TOKENS, size=8, count_tokens=superadditive)
    check_invariants(text, chunks, 0)
    assert all(superadditive(c.text) <= 8 for c in chunks)


def test_tokens_split_a_long_word_with_few_counts() -> None:
    calls: list[int] = []

    def counting(text: str) -> int:
        calls.append(len(text))
        return len(text) + 2

    text = "z" * 200_000
    chunks = chunk_text(text, strategy=Strategy.TOKENS, size=1000, count_tokens=counting)
    assert texts(chunks) == [text[i : i + 998] for i in range(0, len(text), 998)]
    assert sum(calls) < 40 * len(text)  # galloping: about log(piece) counts of the piece, not of the rest


def test_character_over_the_token_size_names_chunk_size() -> None:
    with pytest.raises(InvalidInput) as info:
        chunk_text("ab", strategy=Strategy.TOKENS, size=3, count_tokens=lambda t: 5 * len(t))
    assert info.value.field == "chunk_size"


# --- parameters and limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"size": 0}, "chunk_size"),
        ({"size": -3}, "chunk_size"),
        ({"size": 5, "overlap": 5}, "overlap"),
        ({"size": 5, "overlap": 9}, "overlap"),
        ({"size": 5, "overlap": -1}, "overlap"),
        ({"size": 5, "strategy": Strategy.TOKENS}, "chunking"),
        ({"size": 5, "strategy": "words"}, "chunking"),
    ],
)
def test_bad_parameters_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        chunk_text("some text", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_too_many_chunks_stops_early_and_names_the_limit() -> None:
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return len(text.split()) + 2

    with pytest.raises(InputTooLarge) as info:
        chunk_text("word " * 200_000, strategy=Strategy.TOKENS, size=3, count_tokens=counting, max_chunks=100)
    assert info.value.field == "chunk_size"
    assert "100" in info.value.message
    assert len(calls) < 1_000
    with pytest.raises(InputTooLarge):
        chunk_text("x" * 10_000_000, strategy=Strategy.CHARS, size=1, max_chunks=100)


def test_exactly_max_chunks_is_allowed() -> None:
    assert len(chunk_text("x" * 100, strategy=Strategy.CHARS, size=10, max_chunks=10)) == 10


def test_a_megabyte_of_sentences_keeps_every_character() -> None:
    # Linear work takes ~0.05 s here; a quadratic slip would run into the suite's per-test timeout instead.
    text = "The quick brown fox jumps over the lazy dog. 你好，世界！\n" * 19_000
    chunks = chunk_text(text, size=500)
    assert "".join(texts(chunks)) == text
    assert all(len(c.text) <= 500 for c in chunks)


# --- properties ------------------------------------------------------------------------------------------------

PIECES = [*"abc xyz.!?\n\t,;\"')", *"你好世界。！？；「」、こんにちは", FAMILY, THUMBS, FLAG, E_ACUTE]
PIECES += ["\u0301", "\u200d", "  ", "\n\n", "\r\n", "…", "3.14", "Ü", "\u3000", "한국어"]
TEXTS = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=120).map("".join),
    st.text(max_size=150),
    st.text(alphabet=" \t\n\r\u3000\u2028", max_size=40),
)
PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(text=TEXTS, size=st.integers(1, 40), data=st.data())
def test_chars_and_sentences_keep_the_invariants(text: str, size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.sampled_from([0, data.draw(st.integers(0, size - 1))]))
    for strategy in (Strategy.CHARS, Strategy.SENTENCES):
        chunks = chunk_text(text, strategy=strategy, size=size, overlap=overlap)
        check_invariants(text, chunks, overlap)
        assert all(len(c.text) <= size for c in chunks)


TokenCounter = Callable[[str], int]


@PROPERTY
@given(
    text=TEXTS,
    size=st.integers(3, 30),
    counter=st.sampled_from([fake_count, wordpiece_count, lambda t: len(t) // 3 + 1]),
    data=st.data(),
)
def test_tokens_keep_the_invariants(text: str, size: int, counter: TokenCounter, data: st.DataObject) -> None:
    overlap = data.draw(st.sampled_from([0, data.draw(st.integers(0, size - 1))]))
    chunks = chunk_text(text, strategy=Strategy.TOKENS, size=size, overlap=overlap, count_tokens=counter)
    check_invariants(text, chunks, overlap)
    assert all(counter(c.text) <= size for c in chunks)


@PROPERTY
@given(text=TEXTS, size=st.integers(1, 40), max_chunks=st.integers(0, 10))
def test_max_chunks_either_holds_or_raises(text: str, size: int, max_chunks: int) -> None:
    try:
        chunks = chunk_text(text, size=size, max_chunks=max_chunks)
    except InputTooLarge:
        assert len(chunk_text(text, size=size)) > max_chunks
    else:
        assert len(chunks) <= max_chunks
