"""Backgrounds of the synthetic scene-text images (``textboost.data.synth``).

Procedural street-like scenes (a gradient, multi-scale colour noise, shapes, facades,
foliage-like texture, depth-of-field blur), or random crops of real photos from a folder.
Every function draws only from the ``numpy`` generator it is given.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from textboost.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_backgrounds(folder: str | Path) -> list[Path]:
    """Sorted readable image files under ``folder`` (recursive); raises if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise ImageError(f"backgrounds folder {root} does not exist; pass a folder of photos")
    paths = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            with Image.open(path) as im:
                if min(im.size) >= 16:
                    paths.append(path)
        except OSError:
            continue  # not an image: skipped
    if not paths:
        raise ImageError(
            f"backgrounds folder {root} holds no readable image ({', '.join(IMAGE_SUFFIXES)}); "
            "add photos or leave --backgrounds out for procedural backgrounds"
        )
    return paths


@functools.lru_cache(maxsize=8)
def backgrounds_of(folder: str) -> list[Path]:
    """``list_backgrounds`` once per folder and process (callers pass a folder per image)."""
    return list_backgrounds(folder)


def smooth_field(rng: np.random.Generator, w: int, h: int, cells: int, ch: int) -> np.ndarray:
    """Low-frequency random field in [0, 1], HxWxch, by bicubic upsampling of a small grid."""
    grid = (rng.random((cells, cells, ch)) * 255).astype(np.uint8)
    mode = "RGB" if ch == 3 else "L"
    up = Image.fromarray(grid.squeeze(), mode).resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(up, dtype=np.float32).reshape(h, w, ch) / 255.0


def _random_fill(rng: np.random.Generator, alpha: tuple[int, int] = (60, 256)) -> tuple:
    return (*(int(v) for v in rng.integers(0, 256, 3)), int(rng.integers(*alpha)))


def _draw_shapes(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    """Rectangles, ellipses, polygons and lines from tiny to image-sized (log-uniform)."""
    for _ in range(int(rng.integers(8, 40))):
        size = np.exp(rng.uniform(math.log(0.02), 0.0, 2)) * (w, h)
        cx, cy = rng.uniform(0, 1, 2) * (w, h)
        box = (cx - size[0] / 2, cy - size[1] / 2, cx + size[0] / 2, cy + size[1] / 2)
        kind, fill = rng.random(), _random_fill(rng)
        if kind < 0.4:
            draw.rectangle(box, fill=fill)
        elif kind < 0.6:
            draw.ellipse(box, fill=fill)
        elif kind < 0.8:
            pts = rng.uniform(-0.5, 0.5, (int(rng.integers(3, 7)), 2)) * size + (cx, cy)
            draw.polygon([tuple(p) for p in pts], fill=fill)
        else:
            draw.line(box, fill=fill, width=int(rng.integers(1, 10)))


def _draw_facade(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    """A grid of windows or tiles: the regular clutter of street scenes."""
    x0, y0 = rng.uniform(0, 0.6, 2) * (w, h)
    x1, y1 = (x0, y0) + rng.uniform(0.2, 0.8, 2) * (w, h)
    rows, cols = int(rng.integers(2, 12)), int(rng.integers(2, 12))
    cw, ch = (x1 - x0) / cols, (y1 - y0) / rows
    fill = _random_fill(rng, (120, 256))
    fill_ratio = rng.uniform(0.4, 0.85)
    for r in range(rows):
        for c in range(cols):
            jitter = tuple(int(v) for v in rng.integers(-25, 26, 3))
            f = tuple(int(np.clip(a + b, 0, 255)) for a, b in zip(fill[:3], jitter))
            bx, by = x0 + c * cw, y0 + r * ch
            draw.rectangle((bx, by, bx + cw * fill_ratio, by + ch * fill_ratio), fill=(*f, fill[3]))


def procedural_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Gradient + multi-scale colour noise + shapes, facades, foliage-like texture + blur."""
    sw, sh = max(16, w // 8), max(16, h // 8)  # smooth layers are built small, upsampled once
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = np.cos(theta) * np.arange(sw)[None, :] + np.sin(theta) * np.arange(sh)[:, None]
    ramp = ((ramp - ramp.min()) / max(np.ptp(ramp), 1.0)).astype(np.float32)
    small = c0 + ramp[..., None] * (c1 - c0)
    for cells, amp in ((3, 70.0), (8, 40.0), (24, 18.0)):
        small += (smooth_field(rng, sw, sh, cells, 3) - 0.5) * amp * rng.uniform(0.3, 1.0)
    small = np.clip(small, 0, 255).astype(np.uint8)
    canvas = Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(canvas, "RGBA")
    _draw_shapes(draw, rng, w, h)
    for _ in range(int(rng.integers(0, 3))):
        _draw_facade(draw, rng, w, h)
    radius = float(rng.uniform(0.0, 2.5))  # depth of field
    if radius > 0.5:
        canvas = canvas.filter(ImageFilter.BoxBlur(radius))
    out = np.asarray(canvas, dtype=np.float32)
    if rng.random() < 0.5:  # foliage / gravel: fine texture under a smooth mask
        texture = smooth_field(rng, w, h, max(8, w // 4), 1) - 0.5
        out += texture * rng.uniform(30, 90) * (smooth_field(rng, w, h, 4, 1) > 0.5)
    return out


def photo_background(rng: np.random.Generator, path: Path, w: int, h: int) -> np.ndarray:
    """A random crop of a real photo with the target aspect, resized to ``w x h``."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (w, h))
            photo = im.convert("RGB")
    except OSError as exc:
        raise ImageError(f"background {path} cannot be decoded ({exc}); remove it") from None
    pw, ph = photo.size
    scale = min(pw / w, ph / h) * rng.uniform(0.5, 1.0)
    cw, chh = w * scale, h * scale
    x0, y0 = rng.uniform(0, pw - cw), rng.uniform(0, ph - chh)
    crop = photo.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + chh))
    return np.asarray(crop, dtype=np.float32)
