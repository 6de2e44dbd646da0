"""Word colours: each sent word's text and background colour, and the colour guidance map.

The paper's guidance map (white glyphs on black) tells the decoder *where* the text is and
*what* it says, but not what it looks like: at 0.02-0.05 bpp the backbone's output of a
small word is a blur, and the fusion block cannot tell the word's colours from it. The
encoder therefore also sends, per filtered word, its text colour and background colour
(6 bytes a word, counted in bpp like every other byte of the container):

* ``word_colours(image, words)``: for each word, the pixels inside its polygon are split in
  two by 2-means in RGB (seeded at the 15th / 85th luminance percentiles). The cluster that
  holds most of the polygon's *border* pixels is the background; the other is the text.
* ``colour_guidance(guidance, words, colours)``: the decoder's colour guidance map. Inside
  each word polygon: ``background + g * (text - background)``, with ``g`` the glyph map in
  [0, 1]; a box mask marks the polygons. Outside: zeros.

Everything is deterministic numpy (same bytes on every machine). ``pack``/``unpack`` give the
container's colour block: 6 bytes per word, in the side info's word order, optionally followed
by each word's strength level (``textboost.text.strength``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textboost.errors import ContainerError, GeometryError
from textboost.text.geometry import rasterize_polygon, repair_polygon
from textboost.text.words import Word

BYTES_PER_WORD = 6  # text RGB, background RGB
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)
ITERATIONS = 8


def _polygon_mask(word: Word, height: int, width: int) -> tuple[int, int, np.ndarray] | None:
    try:
        poly, _ = repair_polygon(word.polygon)
    except GeometryError:
        return None
    return rasterize_polygon(poly.exterior.coords[:-1], height, width)


def _border(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (or on the array edge)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
    inner &= padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _two_colours(pixels: np.ndarray, border: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(text, background) RGB float64 of ``pixels`` (Kx3), ``border`` a K bool mask."""
    luma = pixels @ LUMA
    lo, hi = np.percentile(luma, 15), np.percentile(luma, 85)
    centres = np.stack([pixels[luma <= lo].mean(0), pixels[luma >= hi].mean(0)])
    labels = np.zeros(len(pixels), dtype=np.int64)
    for _ in range(ITERATIONS):
        d = ((pixels[:, None, :] - centres[None]) ** 2).sum(-1)  # Kx2
        labels = d.argmin(1)
        for k in range(2):
            if (labels == k).any():
                centres[k] = pixels[labels == k].mean(0)
    ring = labels[border] if border.any() else labels
    bg = int(np.bincount(ring, minlength=2).argmax())
    if (labels == 1 - bg).sum() == 0:  # flat box: no second colour
        return centres[bg], centres[bg]
    return centres[1 - bg], centres[bg]


def word_colours(image: np.ndarray, words: Sequence[Word]) -> np.ndarray:
    """uint8 ``(len(words), 6)``: text RGB then background RGB of each word (encoder side).

    ``image``: HxWx3 uint8 (the original). A word that covers no pixel gets grey on grey.
    """
    h, w = image.shape[:2]
    out = np.full((len(words), BYTES_PER_WORD), 128, dtype=np.uint8)
    for i, word in enumerate(words):
        hit = _polygon_mask(word, h, w)
        if hit is None:
            continue
        y0, x0, m = hit
        pixels = image[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][m].astype(np.float64)
        if len(pixels) < 4:
            mean = pixels.mean(0)
            text, bg = mean, mean
        else:
            text, bg = _two_colours(pixels, _border(m)[m])
        out[i, :3] = np.clip(np.round(text), 0, 255)
        out[i, 3:] = np.clip(np.round(bg), 0, 255)
    return out


def colour_guidance(
    guidance: np.ndarray,
    words: Sequence[Word],
    colours: np.ndarray,
    offset: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, np.ndarray]:
    """Colour guidance map and box mask for ``guidance`` (HxW uint8, glyphs white).

    ``words`` are in the coordinates of the full image; ``offset`` = ``(x0, y0)`` of the
    ``guidance`` window in it (training crops). Returns ``(cmap HxWx3 uint8, box HxW uint8
    in {0, 1})``; later words are painted over earlier ones.
    """
    h, w = guidance.shape
    cmap = np.zeros((h, w, 3), dtype=np.float32)
    box = np.zeros((h, w), dtype=np.uint8)
    if len(words) != len(colours):
        raise ValueError(f"{len(words)} words but {len(colours)} colour entries")
    g = guidance.astype(np.float32) / 255.0
    ox, oy = offset
    for word, c in zip(words, colours):
        shifted = Word(tuple((x - ox, y - oy) for x, y in word.polygon), word.text, word.legible)
        hit = _polygon_mask(shifted, h, w)
        if hit is None:
            continue
        y0, x0, m = hit
        text, bg = c[:3].astype(np.float32), c[3:].astype(np.float32)
        win = (slice(y0, y0 + m.shape[0]), slice(x0, x0 + m.shape[1]))
        gw = g[win][..., None]
        painted = bg + gw * (text - bg)
        cmap[win] = np.where(m[..., None], painted, cmap[win])
        box[win] |= m.astype(np.uint8)
    return np.clip(np.round(cmap), 0, 255).astype(np.uint8), box


def overlay(base: np.ndarray, cmap: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The no-learning baseline: each word box filled with its background colour and the
    guidance glyphs drawn in its text colour on top of ``base`` (HxWx3 uint8)."""
    return np.where(box[..., None].astype(bool), cmap, base)


def pack(colours: np.ndarray) -> bytes:
    """Colour block bytes (n x 6 uint8)."""
    arr = np.asarray(colours, dtype=np.uint8).reshape(-1, BYTES_PER_WORD)
    return arr.tobytes()


def colour_block(image: np.ndarray, side_info: bytes, levels: Sequence[float] | None) -> bytes:
    """The container's colour block for an RGB ``image`` (HxWx3 uint8): the colours of the
    side info's words as the decoder will see them, in its order, then their strength levels
    (``textboost.text.strength``) when any is below 1."""
    from textboost.text import strength
    from textboost.text.side_info import decode_side_info

    block = pack(word_colours(image, decode_side_info(side_info)))
    if levels is not None and any(level != 1.0 for level in levels):
        block += strength.pack_levels(levels)
    return block


def split_block(data: bytes, n_words: int) -> tuple[bytes, bytes]:
    """The colour block's colours (6 bytes a word) and its optional per-word strength levels
    (``textboost.text.strength``: 2 bits a word, written by ``eval.select: legible``)."""
    from textboost.text.strength import level_bytes

    n = n_words * BYTES_PER_WORD
    if len(data) not in (n, n + level_bytes(n_words)) or (n_words == 0 and data):
        raise ContainerError(
            f"colour block holds {len(data)} bytes, expected {n_words} words x "
            f"{BYTES_PER_WORD} (+ {level_bytes(n_words)} of strengths): the file is damaged"
        )
    return data[:n], data[n:]


def unpack(data: bytes, n_words: int) -> np.ndarray:
    """Inverse of ``pack`` (strength levels after the colours are allowed: ``split_block``)."""
    colours, _ = split_block(data, n_words)
    return np.frombuffer(colours, dtype=np.uint8).reshape(n_words, BYTES_PER_WORD).copy()
