"""The sentence chunker over a live text stream: property tests on English,
Chinese, mixed text, code and numbers, plus the max-wait flush on a clock
the test controls."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from sluiceway.engine.voice import SentenceChunker, speakable
from sluiceway.engine.voice.chunker import weight

EN_WORDS = ["the", "cat", "sat", "on", "a", "mat", "quickly", "brown", "fox", "jumps", "over", "lazy", "dog",
            "Dr.", "Mr.", "e.g.", "U.S.", "3.14", "2.5", "1,000", "v1.2.3", "J.", "it's", "well,"]
EN_ENDS = [".", "!", "?", ";", "...", ".\"", "!)"]
ZH_WORDS = ["今天", "天气", "很好", "我们", "去", "公园", "散步", "你好", "世界", "3.5", "度"]
ZH_ENDS = ["。", "！", "？", "；", "…"]

en_sentence = st.builds(lambda ws, end: " ".join(ws) + end,
                        st.lists(st.sampled_from(EN_WORDS), min_size=1, max_size=14), st.sampled_from(EN_ENDS))
zh_sentence = st.builds(lambda ws, end: "".join(ws) + end,
                        st.lists(st.sampled_from(ZH_WORDS), min_size=1, max_size=10), st.sampled_from(ZH_ENDS))
mixed_text = st.lists(st.one_of(en_sentence, zh_sentence), min_size=1, max_size=8).map(" ".join)


def chunk(text: str, cuts: list[int], **kw) -> list[str]:
    """Feed ``text`` cut at ``cuts`` (as a model's deltas would cut it)."""
    c = SentenceChunker(clock=lambda: 0.0, **kw)
    out: list[str] = []
    prev = 0
    for at in sorted({min(max(0, x), len(text)) for x in cuts}) + [len(text)]:
        out += c.feed(text[prev:at])
        prev = at
    return out + c.finish()


def squash(s: str) -> str:
    return "".join(s.split())


@settings(max_examples=60, deadline=None)
@given(mixed_text, st.lists(st.integers(0, 600), max_size=40))
def test_pieces_do_not_depend_on_how_the_text_was_cut(text, cuts):
    whole = chunk(text, [])
    assert chunk(text, cuts) == whole
    assert chunk(text, list(range(len(text)))) == whole  # one character per delta


@settings(max_examples=60, deadline=None)
@given(mixed_text, st.lists(st.integers(0, 600), max_size=20))
def test_no_text_is_lost_or_added_and_pieces_have_bounded_size(text, cuts):
    pieces = chunk(text, cuts, min_chars=12, max_chars=120)
    assert squash("".join(pieces)) == squash(text)
    assert all(p == p.strip() and p for p in pieces)
    assert all(weight(p) <= 120 for p in pieces)
    assert all(weight(p) >= 12 for p in pieces[:-1])  # short sentences are merged into the next


@settings(max_examples=50, deadline=None)
@given(st.lists(en_sentence, min_size=2, max_size=6))
def test_english_pieces_end_at_sentence_ends_never_inside_numbers_or_abbreviations(sentences):
    text = " ".join(sentences)
    pieces = chunk(text, [], min_chars=1)
    ends = tuple(e.strip() for e in EN_ENDS)
    assert all(p.endswith(ends) for p in pieces)
    words = [w for p in pieces for w in p.split()]
    assert words == text.split()  # every word whole: "3.14", "Dr.", "e.g.", "v1.2.3" never cut
    assert len(pieces) == len(sentences)  # one piece per sentence when none is too short


@settings(max_examples=50, deadline=None)
@given(st.lists(zh_sentence, min_size=2, max_size=8))
def test_chinese_pieces_end_at_chinese_punctuation(sentences):
    text = "".join(sentences)
    pieces = chunk(text, [], min_chars=1)
    assert pieces == sentences
    assert all(p[-1] in "。！？；…" for p in pieces)


@settings(max_examples=50, deadline=None)
@given(mixed_text, st.text(alphabet="abc(){}=;.\n 你好。", max_size=80), mixed_text,
       st.lists(st.integers(0, 400), max_size=30))
def test_code_blocks_are_never_spoken(before, code, after, cuts):
    fence = "```python\n" + code.replace("`", "") + "\n```\n"
    text = before + "\n" + fence + after
    pieces = chunk(text, cuts)
    assert squash("".join(pieces)) == squash(before + after)
    assert not any("```" in p for p in pieces)


def test_known_cases():
    text = ("Dr. Smith paid $3.50 for 2.5 kg, i.e. a bargain! See https://example.com/a.b?x=1 now. "
            "1. First item\n2. Second item\n今天天气很好。我们去公园吧！Mixed 中文 and English? Yes.")
    assert chunk(text, [], min_chars=1) == [
        "Dr. Smith paid $3.50 for 2.5 kg, i.e. a bargain!", "See https://example.com/a.b?x=1 now.",
        "1. First item", "2. Second item", "今天天气很好。", "我们去公园吧！", "Mixed 中文 and English?", "Yes."]


def test_speakable_drops_urls_and_markdown():
    assert speakable("See **this** [page](https://x.org/a.b) or https://y.org/z now.") == "See this page or now."
    assert speakable("# Title") == "Title"
    assert speakable("- `pip install` it") == "pip install it"


def test_max_wait_flushes_at_a_word_boundary_on_the_chunkers_clock():
    now = [0.0]
    c = SentenceChunker(min_chars=8, max_wait=0.4, clock=lambda: now[0])
    assert c.feed("Here is a long opening without any punctu") == []
    assert c.deadline == 0.4
    now[0] = 0.39
    assert c.flush_due() == []
    now[0] = 0.4
    assert c.flush_due() == ["Here is a long opening without any"]  # "punctu" may go on
    assert c.feed("ation yet. Next") == ["punctuation yet."]
    assert c.finish() == ["Next"]


def test_max_wait_cuts_chinese_between_characters():
    now = [0.0]
    c = SentenceChunker(min_chars=4, max_wait=0.3, clock=lambda: now[0])
    c.feed("我们今天去公园")
    now[0] = 1.0
    assert c.flush_due() == ["我们今天去公园"]
    assert c.deadline is None


def test_the_first_piece_waits_less_than_the_rest():
    now = [0.0]
    c = SentenceChunker(min_chars=8, max_wait=0.4, first_wait=0.15, clock=lambda: now[0])
    c.feed("Rivers have always found the lowest")
    assert c.deadline == 0.15
    now[0] = 0.15
    assert c.flush_due() == ["Rivers have always found the"]
    assert c.feed(" path to the sea, and then") == []
    assert c.deadline == 0.55  # later pieces wait max_wait for punctuation


def test_a_lone_long_word_does_not_spin_the_flush():
    now = [0.0]
    c = SentenceChunker(min_chars=8, max_wait=0.2, clock=lambda: now[0])
    c.feed("Supercalifragilistic")
    now[0] = 0.5
    assert c.flush_due() == []
    assert c.deadline == 0.7  # waits another max_wait instead of firing at once again


def test_url_dots_do_not_end_a_sentence():
    assert chunk("Visit www.example.org/x.y today. Then stop.", [], min_chars=1) == [
        "Visit www.example.org/x.y today.", "Then stop."]
    assert re.fullmatch(r"Visit\s+today\.", speakable("Visit www.example.org/x.y today."))
