"""Guidance map renderer: OCR words -> aligned text image, white on black (paper 4.1).

For each word (Fig. 3): minimal rotated rectangle -> in-plane angle of the principal edge
(oriented by the annotation's reading direction) -> the text is laid out horizontally with a
font size fitted to the box -> rotated back and placed. One affine resampling does the
fit, the rotation and the sub-pixel placement of a small per-word patch, which is then
max-composited into the map (order of words does not matter). No words: a zero map.

Deterministic bytes on every machine with the same Pillow: the font is Pillow's built-in
scalable font (Aileron Regular, ``ImageFont.load_default(size=...)``, basic layout; the
wheel bundles FreeType), never a system font; glyphs are drawn one by one (cached per
character and size) at Pillow's advances (the font has no kerning); the resampling is
Pillow's double-precision affine transform.

Layout choices (documented deviations where the paper is silent):

* The box's reading direction comes from the vertex order (top-left corner first), so the
  text keeps its orientation (an upside-down sign is drawn upside down). When that
  direction runs along the *shorter* side of the box (stacked vertical text), the text is
  turned to read downwards along the longer side whenever that gives a larger font (the
  paper's "longer side" rule); short words such as ``"I"`` or ``"1"`` in a tall box stay
  upright.
* The text's ink box is fitted to the word box: each axis scales on its own, but the
  stretch between axes is limited to ``MAX_ANISOTROPY``; the text is centred.
* Characters the font lacks are folded (NFKD, accents dropped: ``é`` -> ``e``); what is left
  is drawn as the font's missing-glyph box, so the map still marks where a glyph is.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from textboost.errors import GeometryError, ImageError
from textboost.text.geometry import RotatedRect, min_rotated_rect, rasterize_polygon, repair_polygon
from textboost.text.words import Word

REF_SIZE = 64  # font size at which the text's natural ink box is measured
FONT_MIN, FONT_MAX = 6, 128  # rendered sizes; the affine resampling covers the rest
MAX_ANISOTROPY = 2.0  # horizontal / vertical stretch of the glyphs at most (and 1 / it)
PAD = 2  # zero border around a glyph patch, so bilinear sampling fades to black
MISSING = "\ufffd"  # not in the font: drawn as the missing-glyph box
# Characters of Pillow's built-in Aileron (checked against the font in tests/test_guidance.py)
FONT_CHARS = frozenset(
    [chr(c) for c in range(0x20, 0x7F)] + list("©«°±´·»\u2018\u2019\u201c\u201d…‹›⁄™ﬁﬂ")
)


@cache
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font at ``size`` px (cached per size)."""
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


@lru_cache(maxsize=4096)
def _fold(ch: str) -> str:
    if ch.isspace():
        return " "
    if unicodedata.category(ch)[0] == "C":  # controls, surrogates, private use, unassigned
        return MISSING
    folded = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    return folded if folded and all(c in FONT_CHARS for c in folded) else MISSING


def renderable_text(text: str) -> str:
    """The text as the built-in font can draw it (see module docstring)."""
    return "".join(ch if ch in FONT_CHARS else _fold(ch) for ch in text).strip()


def _fit(length: float, height: float, tw: float, th: float) -> tuple[float, float]:
    """Scales ``(sx, sy)`` taking a ``tw x th`` ink box into ``length x height``."""
    sx, sy = length / tw, height / th
    if sx > MAX_ANISOTROPY * sy:
        sx = MAX_ANISOTROPY * sy
    elif sy > MAX_ANISOTROPY * sx:
        sy = MAX_ANISOTROPY * sx
    return sx, sy


def text_frame(word: Word, tw: float, th: float) -> RotatedRect:
    """The rectangle the text is drawn in: reading direction along ``length`` (4.1)."""
    rect = min_rotated_rect(word.polygon)
    if rect.length >= rect.height:
        return rect
    along = _fit(rect.length, rect.height, tw, th)[1]
    turned = _fit(rect.height, rect.length, tw, th)[1]
    if turned <= along:
        return rect
    angle = rect.angle - 90.0 if rect.angle - 90.0 > -180.0 else rect.angle + 270.0
    return RotatedRect(rect.cx, rect.cy, rect.height, rect.length, angle)


def font_size(px: float) -> int:
    """Rendered font size for a wanted one: every size to 32, then steps of 2 to 64, then 4.

    At most 3 % off (the affine fit takes the rest), so the glyph cache stays small.
    """
    size = min(float(FONT_MAX), max(float(FONT_MIN), px))
    step = 1 if size < 32.5 else 2 if size < 65 else 4
    return int(step * round(size / step))


@lru_cache(maxsize=8192)  # ~60 sizes x ~110 characters
def _glyph(ch: str, size: int) -> tuple[np.ndarray | None, int, int, float]:
    """``(ink bitmap or None, left, top, advance)`` of one character at ``size`` (cached).

    ``left``/``top`` place the bitmap relative to the pen position and the ascender line.
    """
    f = font(size)
    left, top, right, bottom = f.getbbox(ch)
    advance = f.getlength(ch)
    if right <= left or bottom <= top:
        return None, 0, 0, advance
    im = Image.new("L", (right - left, bottom - top))
    ImageDraw.Draw(im).text((-left, -top), ch, fill=255, font=f)
    return np.asarray(im), left, top, advance


def _layout(text: str, size: int) -> tuple[list[tuple[np.ndarray, int, int]], tuple[int, ...]]:
    """Glyphs of ``text`` on one line (basic layout, no kerning) and their ink box."""
    pen, placed = 0.0, []
    for ch in text:
        bitmap, left, top, advance = _glyph(ch, size)
        if bitmap is not None:
            placed.append((bitmap, math.floor(pen + 0.5) + left, top))
        pen += advance
    if not placed:
        return [], (0, 0, 0, 0)
    x0 = min(x for _, x, _ in placed)
    y0 = min(y for _, _, y in placed)
    x1 = max(x + b.shape[1] for b, x, _ in placed)
    y1 = max(y + b.shape[0] for b, _, y in placed)
    return placed, (x0, y0, x1, y1)


def _glyph_patch(text: str, size: int) -> tuple[Image.Image, float, float, int, int]:
    """Text drawn at ``size`` with a zero border: ``(patch, ink cx, ink cy, ink w, ink h)``."""
    placed, (x0, y0, x1, y1) = _layout(text, size)
    w, h = x1 - x0, y1 - y0
    patch = np.zeros((h + 2 * PAD, w + 2 * PAD), dtype=np.uint8)  # (H, W)
    for bitmap, x, y in placed:
        gh, gw = bitmap.shape
        region = patch[PAD + y - y0 : PAD + y - y0 + gh, PAD + x - x0 : PAD + x - x0 + gw]
        np.maximum(region, bitmap, out=region)
    return Image.fromarray(patch), PAD + w / 2, PAD + h / 2, w, h


@lru_cache(maxsize=65536)
def _natural_size(text: str) -> tuple[int, int]:
    """Ink box ``(width, height)`` of the text at ``REF_SIZE``."""
    _, (left, top, right, bottom) = _layout(text, REF_SIZE)
    return right - left, bottom - top


def _render_word(canvas: np.ndarray, word: Word) -> None:
    text = renderable_text(word.text)
    if not text:
        return
    tw, th = _natural_size(text)
    if tw <= 0 or th <= 0:
        return
    frame = text_frame(word, tw, th)
    sx, sy = _fit(frame.length, frame.height, tw, th)
    size = font_size(REF_SIZE * sy)
    patch, gx, gy, bw, bh = _glyph_patch(text, size)
    if bw <= 0 or bh <= 0:
        return
    dw, dh = sx * tw, sy * th  # ink box in the map, px
    (ux, uy), (vx, vy) = frame.axes()
    # axis-aligned bounds of the placed ink box, clipped to the map
    ex, ey = abs(ux) * dw / 2 + abs(vx) * dh / 2, abs(uy) * dw / 2 + abs(vy) * dh / 2
    x0, x1 = (
        max(0, math.floor(frame.cx - ex) - 1),
        min(canvas.shape[1], math.ceil(frame.cx + ex) + 1),
    )
    y0, y1 = (
        max(0, math.floor(frame.cy - ey) - 1),
        min(canvas.shape[0], math.ceil(frame.cy + ey) + 1),
    )
    if x1 <= x0 or y1 <= y0:
        return
    # map point p -> patch: gx + ((p - c) . u) / kx, gy + ((p - c) . v) / ky
    kx, ky = dw / bw, dh / bh
    ox, oy = x0 - frame.cx, y0 - frame.cy
    coeffs = (
        ux / kx, uy / kx, gx + (ux * ox + uy * oy) / kx,
        vx / ky, vy / ky, gy + (vx * ox + vy * oy) / ky,
    )  # fmt: skip
    placed = patch.transform(
        (x1 - x0, y1 - y0), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
    )
    region = canvas[y0:y1, x0:x1]
    np.maximum(region, np.asarray(placed), out=region)


def _check_size(height: int, width: int) -> None:
    if height < 0 or width < 0 or height * width > 1 << 28:
        raise ImageError(f"guidance map size {height}x{width} must be >= 0 and <= 2^28 pixels")


def render_guidance(words: Iterable[Word], height: int, width: int) -> np.ndarray:
    """Guidance map, uint8 ``(height, width)``: text white on black, zeros without words.

    Words whose polygon cannot be repaired or that lie outside the map draw nothing.
    """
    _check_size(height, width)
    canvas = np.zeros((height, width), dtype=np.uint8)
    for word in words:
        try:
            _render_word(canvas, word)
        except GeometryError:
            continue
    return canvas


def render_text_mask(words: Iterable[Word], height: int, width: int) -> np.ndarray:
    """Binary mask (uint8 in {0, 1}) of the word polygons, for the loss L_gc (paper 4.3).

    A pixel is in when its centre is inside a (repaired) polygon.
    """
    _check_size(height, width)
    mask = np.zeros((height, width), dtype=np.uint8)
    for _, (y0, x0, m) in word_masks(words, height, width):
        mask[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] |= m
    return mask


def word_masks(words: Iterable[Word], height: int, width: int):
    """``(index, (y0, x0, mask))`` of each word whose (repaired) polygon covers a pixel
    centre of the HxW image; the mask is uint8 in {0, 1} over its bounding window."""
    for i, word in enumerate(words):
        try:
            poly, _ = repair_polygon(word.polygon)
        except GeometryError:
            continue
        hit = rasterize_polygon(poly.exterior.coords[:-1], height, width)
        if hit is not None:
            yield i, hit


def overlay(image: Image.Image, guidance: np.ndarray, words: Iterable[Word] = ()) -> Image.Image:
    """The image darkened, guidance in red on top, word polygons outlined in green."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32) * 0.55
    g = guidance.astype(np.float32) / 255.0
    base[..., 0] = base[..., 0] * (1 - g) + 255.0 * g
    base[..., 1:] *= (1 - g)[..., None]
    out = Image.fromarray(base.round().astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for word in words:
        pts = [(float(x), float(y)) for x, y in word.polygon]
        if len(pts) >= 2:
            draw.line(pts + [pts[0]], fill=(0, 255, 0), width=1)
            draw.ellipse(
                [pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=(0, 255, 255)
            )
    return out
