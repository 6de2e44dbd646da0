"""Guidance map renderer and text mask (paper 4.1, 4.3)."""

from __future__ import annotations

import hashlib

import numpy as np
import PIL
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageFilter
from strategies import search

from textboost.errors import ImageError
from textboost.text.geometry import RotatedRect
from textboost.text.guidance import (
    FONT_CHARS,
    _natural_size,
    font,
    render_guidance,
    render_text_mask,
    renderable_text,
)
from textboost.text.words import Word

SETTINGS = search(100)
alnum = st.text(
    st.characters(categories=["Lu", "Ll", "Nd"], max_codepoint=0x7E), min_size=1, max_size=6
)


def word(cx, cy, length, height, angle, text) -> Word:
    return Word(RotatedRect(cx, cy, length, height, angle).corners(), text)


def scene() -> list[Word]:
    return [
        word(150, 60, 220, 40, 0, "Hello"),
        word(400, 80, 200, 36, 30, "Rotated"),
        word(600, 250, 260, 40, 90, "Vertical"),
        word(150, 200, 160, 30, 180, "Upside"),
        word(300, 200, 30, 60, 0, "I"),
        word(350, 200, 12, 4, 0, "tiny"),
        word(10, 300, 120, 30, 0, "edge"),
        word(200, 300, 150, 30, 10, "Café 東京"),
        word(400, 330, 30, 180, 0, "STACK"),
    ]


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.filter(ImageFilter.MaxFilter(2 * px + 1))) > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_font_chars_match_the_builtin_font():
    """FONT_CHARS must be exactly what Pillow's built-in font draws (else its missing-glyph box)."""
    f = font(24)
    missing = bytes(f.getmask("\ue000"))
    ranges = [range(0x20, 0x2200), range(0xFB00, 0xFB07)]
    drawn = {chr(c) for r in ranges for c in r if bytes(f.getmask(chr(c))) != missing}
    assert drawn == set(FONT_CHARS)


def test_no_words_gives_a_zero_map():
    for h, w in ((64, 48), (1, 1), (0, 5)):
        g = render_guidance([], h, w)
        assert g.shape == (h, w) and g.dtype == np.uint8 and not g.any()
        assert not render_text_mask([], h, w).any()
    with pytest.raises(ImageError):
        render_guidance([], -1, 5)


def test_scene_renders_deterministically_inside_the_boxes():
    words = scene()
    g = render_guidance(words, 450, 800)
    assert np.array_equal(g, render_guidance(words, 450, 800))
    assert np.array_equal(g, render_guidance(words[::-1], 450, 800))  # order free (max)
    assert g.max() == 255
    inside = dilate(render_text_mask(words, 450, 800) > 0, 2)
    assert not (g[~inside] > 0).any()  # ink only in (a 2 px margin around) the word boxes
    for w in words:
        alone = render_guidance([w], 450, 800)
        assert alone.any(), w.text  # every word leaves ink, tiny and clipped ones included


# Pillow version -> sha256 of the scene's map; record a new line when Pillow is upgraded
GOLDEN = {"13.0.0": "ddb49afefc72c8e2ed76a785a1a0716c4dc22b00e39e91ac3016b67e3a41c7c9"}


def test_bytes_are_pinned_for_this_pillow():
    """Same input, same bytes with the same Pillow build (its wheel bundles FreeType).

    FreeType rasterises in fixed point; Pillow's affine resampling is IEEE double. Recorded
    on x86-64 Linux; a new Pillow (or another architecture) needs its own line in GOLDEN.
    """
    digest = hashlib.sha256(render_guidance(scene(), 450, 800).tobytes()).hexdigest()
    expected = GOLDEN.get(PIL.__version__)
    if expected is None:
        pytest.skip(f"no golden digest recorded for Pillow {PIL.__version__}")
    assert digest == expected


def test_vertical_and_upside_down_text():
    up = render_guidance([word(100, 100, 160, 30, 0, "Vertical")], 200, 200)
    vert = render_guidance([word(100, 100, 160, 30, 90, "Vertical")], 200, 200)
    ys, xs = np.nonzero(vert)
    assert np.ptp(ys) > 3 * np.ptp(xs)  # reads along the long vertical side
    # a quarter turn about a pixel corner maps the pixel grid onto itself: equal up to the
    # rounding of the bilinear weights (cos 90° is 6e-17 in floating point)
    assert np.abs(np.rot90(up).astype(int) - vert).max() <= 1
    flipped = render_guidance([word(100, 100, 160, 30, 180, "Vertical")], 200, 200)
    assert np.abs(np.rot90(up, 2).astype(int) - flipped).max() <= 1


def test_stacked_vertical_text_turns_but_single_letters_stay_upright():
    stacked = render_guidance([word(50, 100, 30, 180, 0, "STACK")], 200, 100)
    ys, xs = np.nonzero(stacked)
    assert np.ptp(ys) > 3 * np.ptp(xs)
    letter = render_guidance([word(50, 50, 30, 60, 0, "I")], 100, 100)
    upright = render_guidance([word(50, 50, 60, 30, -90, "I")], 100, 100)
    assert iou(letter > 127, upright > 127) < 0.5  # not drawn lying on its side


def test_boxes_partly_or_fully_outside():
    clipped = render_guidance([word(0, 0, 120, 30, 20, "corner")], 50, 50)
    assert clipped.any()
    assert not render_guidance([word(-500, -500, 120, 30, 0, "gone")], 50, 50).any()
    assert not render_guidance([word(25, 25, 40, 10, 0, "")], 50, 50).any()  # empty text
    assert not render_guidance([word(25, 25, 40, 10, 0, "  \t")], 50, 50).any()
    broken = Word(((0, 0), (1, 1), (2, 2), (3, 3)), "line")  # no area: skipped
    assert not render_guidance([broken], 50, 50).any()


def test_missing_characters_and_controls():
    assert renderable_text("Café") == "Cafe"
    assert renderable_text("ﬁne") == "ﬁne"  # the font has the ligature
    assert renderable_text("東\x00\n a") == "\ufffd\ufffd  a"
    assert renderable_text("\ud800x") == "\ufffdx"  # lone surrogate
    g = render_guidance([word(50, 25, 80, 30, 0, "東京")], 50, 100)
    assert g.any()  # drawn as missing-glyph boxes where the glyphs are


@SETTINGS
@given(alnum, st.floats(24, 48), st.floats(0.8, 1.5), st.floats(-180, 180))
def test_rotated_word_is_the_upright_render_rotated(text, height, stretch, theta):
    """A word rotated by θ renders as the upright render rotated by θ.

    The box fits the text (length = its natural aspect x height x stretch), so the ink is
    ``height`` px high. Letters and digits only: punctuation such as ``|`` or ``-`` has
    hairline strokes for which a half-pixel shift is no small change. The reference goes through one more bilinear resampling
    (Image.rotate), which moves stroke edges by at most ~0.5 px and blurs them. Strokes of
    the built-in font are ~0.15 of the font size, >= 4 px for ink >= 24 px high, so the
    thresholded ink masks keep IoU >= (s - 1) / (s + 1) >= 0.6, and every ink pixel of one
    lies within 1 px of ink of the other (tolerant F-score ~1). Measured over 350 cases:
    IoU >= 0.78, F = 1.0.
    """
    tw, th = _natural_size(renderable_text(text))
    length = min(300.0, tw / th * height * stretch)
    c = 160.0
    up = render_guidance([word(c, c, length, height, 0.0, text)], 320, 320)
    rot = render_guidance([word(c, c, length, height, theta, text)], 320, 320)
    ref = np.asarray(
        Image.fromarray(up).rotate(theta, resample=Image.Resampling.BILINEAR, center=(c, c))
    )
    a, b = rot >= 128, ref >= 128
    assert iou(a, b) >= 0.6
    tolerant = ((a & dilate(b, 1)).sum() + (b & dilate(a, 1)).sum()) / max(1, a.sum() + b.sum())
    assert tolerant >= 0.95


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(st.floats(-50, 150), st.floats(-50, 150)), min_size=4, max_size=8),
            st.text(max_size=8),
        ),
        max_size=6,
    )
)
def test_arbitrary_words_never_crash(items):
    words = [Word(tuple(p), t) for p, t in items]
    g = render_guidance(words, 100, 100)
    m = render_text_mask(words, 100, 100)
    assert g.shape == m.shape == (100, 100) and set(np.unique(m)) <= {0, 1}
    assert np.array_equal(g, render_guidance(words, 100, 100))


def test_text_mask_fills_polygons():
    m = render_text_mask([Word(((10, 5), (30, 5), (30, 15), (10, 15)), "ab")], 40, 40)
    assert m.dtype == np.uint8 and m.sum() == 200 and m[5:15, 10:30].all()
    r = RotatedRect(20, 20, 30, 10, 45)
    m = render_text_mask([Word(r.corners(), "x"), Word(r.corners(), "y")], 40, 40)
    assert abs(int(m.sum()) - 300) < 40 and m.max() == 1  # overlap stays binary
    tri = Word(((0, 0), (39, 0), (0, 39), (39, 39)), "bow tie")  # repaired to its hull
    assert render_text_mask([tri], 40, 40).sum() >= 39 * 39 - 40


def test_render_cli_writes_the_decoders_map_and_an_overlay(tmp_path, capsys):
    from jobs.render import main
    from textboost.text.ocr import read_icdar2015_gt
    from textboost.text.side_info import decode_side_info, encode_side_info

    image = Image.new("RGB", (320, 200), (90, 110, 130))
    image.save(tmp_path / "img_1.jpg")
    words = [word(100, 50, 120, 24, 15, "Hello"), word(250, 150, 24, 120, 0, "TALL")]
    gt = "\ufeff" + "".join(
        ",".join(f"{x:.2f},{y:.2f}" for x, y in w.polygon) + f",{w.text}\r\n" for w in words
    )
    (tmp_path / "gt_img_1.txt").write_text(gt + "1,1,9,1,9,9,1,9,###\r\n", encoding="utf-8")
    argv = [str(tmp_path / "img_1.jpg"), "--ocr", str(tmp_path / "gt_img_1.txt")]
    argv += ["--out", str(tmp_path / "g.png"), "--overlay", str(tmp_path / "o.png")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 words, 2 kept" in out and "'illegible': 1" in out and "side info compact" in out
    sent = read_icdar2015_gt(tmp_path / "gt_img_1.txt")[:2]
    expected = render_guidance(decode_side_info(encode_side_info(sent, (320, 200))), 200, 320)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")), expected)
    assert Image.open(tmp_path / "o.png").size == (320, 200)
