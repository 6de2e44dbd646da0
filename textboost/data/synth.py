"""Synthetic scene-text images with TextOCR / ICDAR 2015 annotations.

Stand-in for the paper's datasets (5.1.1) when no real scene-text set is reachable: natural-
looking backgrounds (procedural textures, or crops of real photos; ``synth_backgrounds``),
words from the built-in vocabulary (``textboost.text.vocab``) in every system font plus Pillow's
built-in font, cap heights from about 6 to 80 px, rotations up to +-90 degrees, mild
shear/perspective, blur, noise and JPEG artefacts, and some illegible words. Large words are
readable by an OCR engine, small ones mostly are not: the regime TextBoost targets (paper 1,
4.1).

Image ``i`` of seed ``s`` depends only on ``(s, i)`` (its own ``numpy`` generator), the fonts
found and the Pillow build: the same bytes whatever the number of images or workers.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from textboost.data.synth_backgrounds import (
    backgrounds_of,
    photo_background,
    procedural_background,
    smooth_field,
)
from textboost.errors import ConfigError
from textboost.text.vocab import cap_ratio, find_fonts, font, random_word
from textboost.text.words import Word

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class SynthStyle:
    """Distribution of the rendered words; defaults mimic TextOCR (many small words)."""

    cap_min: float = 6.0  # cap height in pixels, log-uniform in [cap_min, cap_max]
    cap_max: float = 80.0
    max_angle: float = 90.0  # most words near horizontal, a few up to +-max_angle
    illegible_prob: float = 0.1  # heavily blurred or low-contrast words, annotated illegible
    distort: bool = True  # shear, perspective, blur, noise, JPEG round trip
    plate_prob: float = 0.3  # word on a sign plate
    stroke_prob: float = 0.15  # outlined letters


@dataclass(frozen=True)
class SynthWord:
    """A placed word plus what it was rendered with (for histograms and readability checks)."""

    word: Word
    cap_height: float
    angle: float
    font: str


# --------------------------------------------------------------------------- words


def _colour(rng: np.random.Generator, luma: float) -> np.ndarray:
    """A random colour whose luminance is close to ``luma``."""
    c = rng.uniform(0, 255, 3).astype(np.float32)
    c = c.mean() + rng.uniform(0.0, 1.0) * (c - c.mean())
    return np.clip(c + (luma - float(c @ LUMA)), 0, 255)


def _contrasting(rng: np.random.Generator, bg_luma: float, lo: float, hi: float) -> np.ndarray:
    """A colour whose luminance differs from ``bg_luma`` by about ``U(lo, hi)``."""
    delta = rng.uniform(lo, hi)
    up_room, down_room = 255.0 - bg_luma, bg_luma
    go_up = up_room > down_room if rng.random() < 0.85 else up_room <= down_room
    if (go_up and up_room < lo) or (not go_up and down_room < lo):
        go_up = not go_up
    return _colour(rng, bg_luma + delta if go_up else bg_luma - delta)


def _homography(rng: np.random.Generator, style: SynthStyle, box_w: float) -> tuple:
    """Word -> image matrix about the word centre: rotation . shear . perspective; and angle."""
    r = rng.random()  # mostly horizontal, some slanted, a few up to vertical (as in TextOCR)
    spread = 3.0 if r < 0.6 else 30.0 if r < 0.85 else 90.0
    spread = min(spread, style.max_angle)
    angle = float(rng.uniform(-spread, spread))
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    shear, persp = np.eye(3), np.eye(3)
    if style.distort:
        shear[0, 1] = rng.uniform(-0.25, 0.25) if rng.random() < 0.3 else 0.0
        if rng.random() < 0.3:
            persp[2, :2] = rng.uniform(-0.15, 0.15, 2) / max(box_w, 1.0)
    return rot @ shear @ persp, angle


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    q = np.c_[pts, np.ones(len(pts))] @ m.T
    return q[:, :2] / q[:, 2:3]


def _legibility(rng: np.random.Generator, style: SynthStyle, illegible: bool) -> tuple:
    """How readable a word is: (blur px, blur per px of cap height, text contrast range)."""
    if not illegible:
        return (rng.uniform(0.0, 1.5) if style.distort else 0.0), 0.0, (60.0, 200.0)
    if rng.random() < 0.5:
        return 0.0, rng.uniform(0.3, 0.6), (60.0, 200.0)  # blurred beyond reading
    return 0.0, 0.0, (4.0, 14.0)  # faded into the background


def _word_layers(text: str, font, cap: float, rng, style: SynthStyle, halo: float) -> tuple:
    """Horizontal masks (plate, stroke, text) as images, the text box and the footprint.

    ``halo`` is extra margin for the blur of the glyphs; a plate gives its own margin.
    """
    stroke = max(1, round(cap * 0.08)) if rng.random() < style.stroke_prob else 0
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    pad = max(1.0, 0.12 * cap)
    plate = rng.random() < style.plate_prob
    margin = pad + (rng.uniform(0.3, 0.8) * cap if plate else halo) + 2
    w, h = int(math.ceil(right - left + 2 * margin)), int(math.ceil(bottom - top + 2 * margin))
    origin = (margin - left, margin - top)
    box = np.array([[margin - pad, margin - pad], [w - margin + pad, margin - pad]])
    box = np.vstack([box, [[w - margin + pad, h - margin + pad], [margin - pad, h - margin + pad]]])
    masks = []
    if plate:
        im = Image.new("L", (w, h))
        ImageDraw.Draw(im).rounded_rectangle((1, 1, w - 2, h - 2), radius=cap * 0.2, fill=255)
        masks.append(("plate", im))
    if stroke:
        im = Image.new("L", (w, h))
        ImageDraw.Draw(im).text(origin, text, font=font, fill=255, stroke_width=stroke)
        masks.append(("stroke", im))
    im = Image.new("L", (w, h))
    ImageDraw.Draw(im).text(origin, text, font=font, fill=255)
    masks.append(("text", im))
    gap = np.array([0.5 * cap, 0.3 * cap])  # keep words apart: OCR engines merge close words
    foot = box + np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * gap
    if plate:
        foot = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=float)
    return masks, box, foot, (w, h)


def _warp(mask: Image.Image, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    inv = np.array([np.cross(m[1], m[2]), np.cross(m[2], m[0]), np.cross(m[0], m[1])]).T
    coeffs = (inv / inv[2, 2]).ravel()[:8]  # adjugate: the inverse up to scale (no BLAS call)
    out = mask.transform(size, Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.float32) / 255.0


def _place_word(img: np.ndarray, rng, fonts, style: SynthStyle, placed: list) -> SynthWord | None:
    """Render one word and composite it where it overlaps no placed word; None if no room."""
    from shapely.geometry import Polygon

    h_img, w_img = img.shape[:2]
    text = random_word(rng)
    spec = fonts[int(rng.integers(0, len(fonts)))]
    cap_hi = max(style.cap_min, min(style.cap_max, min(h_img, w_img) / 4))
    cap = float(np.exp(rng.uniform(math.log(style.cap_min), math.log(cap_hi))))
    illegible = rng.random() < style.illegible_prob
    blur_px, blur_rel, contrast = _legibility(rng, style, illegible)
    for _ in range(3):  # shrink when the word does not fit
        face = font(spec, max(4, round(cap / cap_ratio(spec))))
        blur = blur_px + blur_rel * cap
        masks, box, foot, (pw, ph) = _word_layers(text, face, cap, rng, style, 2 * blur)
        centre = np.array([pw / 2, ph / 2])
        m, angle = _homography(rng, style, box[1, 0] - box[0, 0])
        corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], dtype=float)
        ext = _apply(m, corners - centre)
        lo, hi = ext.min(0), ext.max(0)
        if (hi - lo < [w_img - 4, h_img - 4]).all():
            break
        cap *= 0.6
    else:
        return None
    for _ in range(20):  # rejection sampling of the position
        pos = rng.uniform(-lo + 2, [w_img - 2, h_img - 2] - hi)
        foot_poly = Polygon(_apply(m, foot - centre) + pos)
        if all(foot_poly.intersection(p).area < 0.02 * min(foot_poly.area, p.area) for p in placed):
            break
    else:
        return None
    placed.append(foot_poly)
    x0, y0 = np.floor(lo + pos).astype(int)
    x1, y1 = np.ceil(hi + pos).astype(int)
    shift = np.array([[1, 0, pos[0] - x0], [0, 1, pos[1] - y0], [0, 0, 1]])
    to_canvas = shift @ m @ np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1]])
    region = img[y0:y1, x0:x1]
    _composite(region, masks, to_canvas, rng, blur, contrast)
    quad = _apply(m, box - centre) + pos
    poly = tuple((round(float(x), 2), round(float(y), 2)) for x, y in quad)
    word = Word(polygon=poly, text="." if illegible else text, legible=not illegible)
    return SynthWord(word=word, cap_height=round(cap, 2), angle=round(angle, 2), font=spec)


def _composite(region, masks, to_canvas, rng, blur: float, contrast: tuple) -> None:
    """Blend the warped plate/stroke/text layers into ``region`` (HxWx3 float, in place)."""
    size = (region.shape[1], region.shape[0])
    bg_luma = float(region.reshape(-1, 3).mean(0) @ LUMA)
    colours = {}
    if masks[0][0] == "plate":
        colours["plate"] = _contrasting(rng, bg_luma, 30.0, 120.0)
        bg_luma = float(colours["plate"] @ LUMA)
    colours["text"] = _contrasting(rng, bg_luma, *contrast)
    colours["stroke"] = _contrasting(rng, float(colours["text"] @ LUMA), 80.0, 200.0)
    for name, mask in masks:
        alpha = _warp(mask, to_canvas, size)
        if name != "plate" and blur > 0.3:
            blurred = Image.fromarray(np.uint8(alpha * 255)).filter(ImageFilter.GaussianBlur(blur))
            alpha = np.asarray(blurred, dtype=np.float32) / 255.0
        alpha = alpha[..., None] * (rng.uniform(0.85, 1.0) if name != "plate" else 1.0)
        region *= 1.0 - alpha
        region += alpha * colours[name]


# --------------------------------------------------------------------------- images


def image_size(rng: np.random.Generator, max_side: int, min_side: int) -> tuple[int, int]:
    """``(width, height)``: long side ``max_side``, short side in ``[min_side, max_side]``."""
    short = int(rng.integers(min_side, max_side + 1))
    return (max_side, short) if rng.random() < 0.7 else (short, max_side)


def _degrade(img: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Camera effects on the whole image: lighting, sensor noise, defocus, JPEG round trip."""
    h, w = img.shape[:2]
    img *= 0.75 + 0.4 * smooth_field(rng, w, h, 2, 1)
    img += rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(1.0, 6.0)  # luma noise
    np.clip(img + 0.5, 0, 255, out=img)
    out = Image.fromarray(img.astype(np.uint8), "RGB")
    # optics: one box pass of radius 0.6-1.4 (sigma ~0.55-1.05 px), half the cost of a Gaussian
    out = out.filter(ImageFilter.BoxBlur(float(rng.uniform(0.6, 1.4))))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=int(rng.integers(35, 75)))
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return out


def synth_words(
    index: int,
    seed: int,
    *,
    max_side: int = 1024,
    min_side: int = 512,
    words: tuple[int, int] = (4, 24),
    backgrounds: list[Path] | str | Path | None = None,
    style: SynthStyle | None = None,
    fonts: str = "",
) -> tuple[Image.Image, list[SynthWord]]:
    """Image ``index`` of ``seed`` with its words and their render parameters (cap height...)."""
    check_args(seed, max_side, min_side, words)
    style = style or SynthStyle()
    if isinstance(backgrounds, str | Path):
        backgrounds = backgrounds_of(str(backgrounds))
    rng = np.random.default_rng([int(seed), int(index), 0x7E47B005])
    w, h = image_size(rng, max_side, min_side)
    if backgrounds:
        img = photo_background(rng, backgrounds[int(rng.integers(0, len(backgrounds)))], w, h)
    else:
        img = procedural_background(rng, w, h)
    img = np.clip(img, 0, 255)
    font_specs = find_fonts(fonts)
    placed: list = []
    out: list[SynthWord] = []
    for _ in range(int(rng.integers(words[0], words[1] + 1))):
        sw = _place_word(img, rng, font_specs, style, placed)
        if sw is not None:
            out.append(sw)
    image = _degrade(img, rng) if style.distort else Image.fromarray(np.uint8(img + 0.5), "RGB")
    return image, out


def synth_image(index: int, seed: int, **kwargs) -> tuple[Image.Image, list[Word]]:
    """Image ``index`` of ``seed`` in memory and its words (keywords as ``synth_words``).

    Illegible words carry ``text="."`` and ``legible=False``, as a TextOCR reader returns them.
    """
    image, words = synth_words(index, seed, **kwargs)
    return image, [sw.word for sw in words]


def check_args(seed: int, max_side: int, min_side: int, words: tuple[int, int]) -> None:
    if seed < 0:
        raise ConfigError(f"synth seed must be >= 0, got {seed}")
    if not 64 <= min_side <= max_side:
        raise ConfigError(f"synth needs 64 <= min_side <= max_side, got {min_side}, {max_side}")
    if not 0 <= words[0] <= words[1]:
        raise ConfigError(f"synth words range must satisfy 0 <= min <= max, got {words}")
