"""Average-character-area filter (paper 4.1, 5.1.4)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textboost.errors import ConfigError
from textboost.text.filtering import (
    avg_char_area,
    filter_words,
    keep_word,
    num_chars,
    reason_kind,
)
from textboost.text.geometry import RotatedRect
from textboost.text.words import Word


def box(w: float, h: float, text: str, legible: bool = True, angle: float = 0.0) -> Word:
    return Word(RotatedRect(100, 100, w, h, angle).corners(), text, legible)


def test_avg_char_area_is_area_over_characters():
    assert avg_char_area(box(40, 10, "abcd")) == pytest.approx(100)
    assert avg_char_area(box(40, 10, "ab cd")) == pytest.approx(100)  # spaces take no share
    assert avg_char_area(box(40, 10, "abcd", angle=37)) == pytest.approx(100)
    assert avg_char_area(box(40, 10, "")) == float("inf")
    assert num_chars(" a\tb\n") == 2


def test_keep_rule_and_reasons():
    assert keep_word(box(40, 20, "abcd"), 200) == (True, None)  # exactly T is kept
    ok, reason = keep_word(box(40, 21, "abcd"), 200)
    assert not ok and reason == "avg char area 210.0 > T=200"
    assert keep_word(box(40, 10, ".", legible=False), 800) == (False, "illegible")
    assert keep_word(box(40, 10, "  "), 800) == (False, "no characters")
    ok, reason = keep_word(Word(((0, 0), (1, 1), (2, 2), (3, 3)), "line"), 800)
    assert not ok and reason.startswith("invalid geometry: ") and "no area" in reason
    ok, reason = keep_word(Word(((0, 0), (float("nan"), 0), (1, 1), (0, 1)), "nan"), 800)
    assert not ok and "finite" in reason


def test_filter_splits_preserves_order_and_repairs():
    bow_tie = Word(((0, 0), (20, 10), (20, 0), (0, 10)), "ab")  # area 200 after repair
    words = [
        box(30, 10, "abc"),
        box(300, 100, "BIG"),
        bow_tie,
        box(10, 10, "###", legible=False),
        Word(((0, 0), (0, 0), (1, 1), (1, 1)), "degenerate"),
    ]
    kept, dropped = filter_words(words, 150)
    assert [w.text for w in kept] == ["abc", "ab"]
    assert kept[0] is words[0]  # valid words come back untouched
    assert kept[1].polygon != bow_tie.polygon and avg_char_area(kept[1]) == pytest.approx(100)
    assert [(w.text, reason_kind(r)) for w, r in dropped] == [
        ("BIG", "avg char area > T"),
        ("###", "illegible"),
        ("degenerate", "invalid geometry"),
    ]
    assert dropped[0][1] == "avg char area 10000.0 > T=150"
    with pytest.raises(ConfigError):
        filter_words(words, 0)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.5, 300),
            st.floats(0.5, 100),
            st.text(max_size=12),
            st.booleans(),
            st.floats(-180, 180),
        ),
        max_size=12,
    ),
    st.sampled_from([150.0, 800.0]),
)
def test_filter_partitions_and_respects_threshold(specs, t):
    words = [box(w, h, text, legible, angle) for w, h, text, legible, angle in specs]
    kept, dropped = filter_words(words, t)
    assert len(kept) + len(dropped) == len(words)
    for word in kept:
        assert word.legible and avg_char_area(word) <= t
    for word, reason in dropped:
        assert reason and (not word.legible or avg_char_area(word) > t)
