"""Side-info codec: gzip JSON baseline and the compact format (paper 4.1, 5.1.3)."""

from __future__ import annotations

import gzip
import json
import lzma
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import point_lists, rotated_rects, search

from textboost.errors import SideInfoError
from textboost.text.geometry import RotatedRect, min_rotated_rect, normalize_angle
from textboost.text.side_info import (
    ANGLE_STEPS,
    COMPACT,
    GZIP,
    POS_STEP,
    SIZE_STEP,
    _compress,
    decode_side_info,
    decode_side_info_full,
    encode_side_info,
)
from textboost.text.words import Word
from textboost.varint import put_uvarint

SETTINGS = search(150)
rects = rotated_rects((-100, 2100), (-100, 1600), (0.3, 600), (0.3, 150), (-180, 180))
quads = point_lists(-500, 2500, 4, 10)
words_st = st.lists(
    st.builds(
        lambda r, t, ok: Word(r.corners(), t, ok), rects, st.text(max_size=40), st.booleans()
    ),
    max_size=25,
)
sizes = st.tuples(st.integers(1, 4096), st.integers(1, 4096))


def sample_words() -> list[Word]:
    texts = "OPEN Joe's PIZZA $9.99 24h EXIT Main St. 555-0199 Café Ünïcödé 東京 Hotel".split()
    return [
        Word(RotatedRect(40 + 37 * i, 30 + 53 * (i % 5), 14 * len(t), 18 + i % 3, (i * 7) % 40 - 20).corners(), t)
        for i, t in enumerate(texts * 2)
    ]  # fmt: skip


def rect_close(a: RotatedRect, b: RotatedRect) -> bool:
    step = 360.0 / ANGLE_STEPS
    return (
        abs(a.cx - b.cx) <= POS_STEP / 2 + 1e-6
        and abs(a.cy - b.cy) <= POS_STEP / 2 + 1e-6
        and abs(a.length - b.length) <= SIZE_STEP / 2 + 1e-6
        and abs(a.height - b.height) <= SIZE_STEP / 2 + 1e-6
        and abs(normalize_angle(a.angle - b.angle)) <= step / 2 + 1e-6
    )


@SETTINGS
@given(words_st, sizes)
def test_compact_round_trip_within_quantisation(words, size):
    data = encode_side_info(words, size, "compact")
    info = decode_side_info_full(data)
    assert (info.width, info.height, info.fmt) == (*size, "compact")
    assert encode_side_info(info.words, size, "compact") == data  # idempotent
    assert sorted((w.text, w.legible) for w in info.words) == sorted(
        (w.text, w.legible) for w in words
    )
    originals = {}
    for w in words:
        originals.setdefault((w.text, w.legible), []).append(min_rotated_rect(w.polygon))
    for w in info.words:  # every decoded rectangle is within half a step of one sent
        r = min_rotated_rect(w.polygon)
        candidates = originals[(w.text, w.legible)]
        match = next(o for o in candidates if rect_close(r, o))
        candidates.remove(match)


@SETTINGS
@given(st.lists(st.tuples(quads, st.text(max_size=10)), max_size=8), sizes)
def test_arbitrary_polygons_round_trip_or_raise(items, size):
    words = [Word(tuple(p), t) for p, t in items]
    data = encode_side_info(words, size, "gzip")
    back = decode_side_info(data)
    assert [w.text for w in back] == [w.text for w in words]
    for a, b in zip(words, back):
        assert all(abs(x - u) <= 0.005 + 1e-9 and abs(y - v) <= 0.005 + 1e-9
                   for (x, y), (u, v) in zip(a.polygon, b.polygon))  # fmt: skip
    assert encode_side_info(back, size, "gzip") == data
    try:
        compact = encode_side_info(words, size, "compact")
    except SideInfoError as exc:
        assert "word" in str(exc)  # an unusable polygon is named, never a crash
        return
    again = decode_side_info(compact)
    assert encode_side_info(again, size, "compact") == compact


@SETTINGS
@given(words_st, sizes, st.randoms(use_true_random=False))
def test_compact_is_deterministic_and_order_free(words, size, rnd):
    data = encode_side_info(words, size)
    shuffled = list(words)
    rnd.shuffle(shuffled)
    assert encode_side_info(shuffled, size) == data


def test_empty_word_list_is_tiny():
    for fmt, limit in (("compact", 6), ("gzip", 60)):
        data = encode_side_info([], (1024, 768), fmt)
        assert len(data) <= limit
        assert decode_side_info(data) == [] and (
            decode_side_info_full(data).width,
            decode_side_info_full(data).height,
        ) == (1024, 768)
    assert encode_side_info([], (1, 1)) == bytes([COMPACT, 1, 1, 0])


def test_compact_beats_gzip_on_scene_text():
    words = sample_words()
    compact, baseline = (
        encode_side_info(words, (1024, 768)),
        encode_side_info(words, (1024, 768), "gzip"),
    )
    assert len(compact) <= 0.6 * len(baseline)
    assert baseline[0] == GZIP and compact[0] & 0xF0 == COMPACT
    payload = json.loads(gzip.decompress(baseline[1:]))
    assert payload["width"] == 1024 and payload["words"][0]["text"] == "OPEN"


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "empty"),
        (b"\x99abc", "unknown side-info version"),
        (bytes([COMPACT]), "truncated"),
        (bytes([COMPACT, 0, 1, 0]), "outside"),
        (bytes([COMPACT, 10, 10, 0, 0]), "trailing"),
        (bytes([COMPACT, 10, 10]) + b"\xff" * 12, "over-long varint"),
        (bytes([COMPACT, 10, 10, 0x80, 0x80, 0x01]), "word count"),
        (bytes([COMPACT | 7, 10, 10, 1, 0]), "unknown side-info version"),
        (bytes([COMPACT | 1, 10, 10, 1]) + b"garbage", "does not decompress"),
        (bytes([GZIP]) + b"garbage", "does not decompress"),
        (bytes([GZIP]) + gzip.compress(b"[1, 2]", mtime=0), "not a valid word list"),
        (bytes([GZIP]) + gzip.compress(b"{bad json", mtime=0), "not a valid word list"),
        (bytes([GZIP]) + gzip.compress(b"[" * 100000, mtime=0), "not a valid word list"),
    ],
)
def test_corrupt_side_info_is_rejected(blob, message):
    with pytest.raises(SideInfoError, match=message):
        decode_side_info(blob)


def test_decompression_bombs_are_refused():
    zeros = b"\0" * (8 << 20)  # twice the decompressed-size cap
    for method in (1, 2, 3):
        bomb = bytes([COMPACT | method, 10, 10, 5]) + _compress(method, zeros)
        assert len(bomb) < 20_000
        with pytest.raises(SideInfoError, match="more than"):
            decode_side_info(bomb)
    with pytest.raises(SideInfoError, match="more than"):
        decode_side_info(bytes([GZIP]) + gzip.compress(zeros, mtime=0))


def test_hostile_counts_and_lengths_are_capped():
    def compact(n: int, payload: bytes, method: int = 0) -> bytes:
        head = bytearray([COMPACT | method, 10, 10])
        put_uvarint(head, n)
        return bytes(head) + _compress(method, payload)

    with pytest.raises(SideInfoError, match="word count"):
        decode_side_info(compact(10**9, b""))
    text_len_too_big = bytes([0] + [0] * 5 + [0x80, 0x40])  # 1 word, text length 8192
    with pytest.raises(SideInfoError, match="text length"):
        decode_side_info(compact(1, text_len_too_big))
    truncated_text = bytes([0] + [0] * 5 + [5]) + b"ab"
    with pytest.raises(SideInfoError, match="truncated"):
        decode_side_info(compact(1, truncated_text, method=1))
    bad_utf8 = bytes([0] + [0] * 5 + [2]) + b"\xff\xfe"
    with pytest.raises(SideInfoError, match="UTF-8"):
        decode_side_info(compact(1, bad_utf8))
    angle_out = bytes([0, 0, 0, 0, 0, 0x80, 0x08, 0])  # zigzag 1024 -> +512 steps
    with pytest.raises(SideInfoError, match="angle"):
        decode_side_info(compact(1, angle_out))


@pytest.mark.parametrize(
    "words, size, message",
    [
        ([Word(((0, 0), (1, 1), (2, 2), (3, 3)), "line")], (10, 10), "word 0"),
        ([Word(((0, 0), (5, 0), (5, 5), (0, 5)), "x" * 2000)], (10, 10), "longer than"),
        ([], (0, 10), "outside"),
        ([], (10, 1 << 20), "outside"),
        ([], "big", "image_size"),
        ([Word(((0, 0), (5, 0), (5, 5), (0, 5)), "x" * 1000)] * 5000, (10, 10), "exceeds"),
    ],
)
def test_bad_input_to_encoder(words, size, message):
    with pytest.raises(SideInfoError, match=message):
        encode_side_info(words, size)
    with pytest.raises(SideInfoError, match="unknown side-info format"):
        encode_side_info([], (10, 10), "xml")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_side_info_error(blob):
    for data in (blob, bytes([COMPACT | (blob[:1] or b"\0")[0] % 4]) + blob, bytes([GZIP]) + blob):
        try:
            words = decode_side_info(data)
        except SideInfoError:
            continue
        assert all(isinstance(w, Word) and len(w.polygon) >= 4 for w in words)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_side_info_decodes_or_raises_side_info_error(data):
    fmt = data.draw(st.sampled_from(["compact", "gzip"]))
    blob = bytearray(encode_side_info(sample_words(), (1024, 768), fmt))
    action = data.draw(st.sampled_from(["flip", "truncate", "append", "splice"]))
    if action == "flip":
        for _ in range(data.draw(st.integers(1, 3))):
            blob[data.draw(st.integers(0, len(blob) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    elif action == "truncate":
        del blob[data.draw(st.integers(0, len(blob) - 1)) :]
    elif action == "append":
        blob += data.draw(st.binary(min_size=1, max_size=20))
    else:
        pos = data.draw(st.integers(1, len(blob) - 1))
        blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        decode_side_info(bytes(blob))
    except SideInfoError:
        pass


def test_stdlib_compressors_used_are_bounded_streams():
    payload = b"abc" * 100
    for method in (1, 2, 3):
        out = _compress(method, payload)
        assert out != payload
    assert zlib.decompressobj(-15).decompress(_compress(1, payload)) == payload
    assert lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 16}]).decompress(_compress(2, payload)) == payload  # fmt: skip
