"""Per-word strength of the colour block's text path (``eval.select: legible``).

The encoder may send, with each word's colours, how strongly the decoder draws it: one of
``LEVELS`` (2 bits a word, appended to the container's colour block and counted in bpp).
The decoder then shows ``x_ref + s * (x_fused - x_ref)``, with ``x_ref`` its output without
any word (the refined backbone) and ``s`` the strength map: every pixel takes the level of
the nearest sent word's polygon (the fused image differs from ``x_ref`` only around the
words, so only those pixels change). A colour block without levels means full strength.

Everything is deterministic numpy: the encoder's preview and the decoder agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from textboost.errors import ContainerError
from textboost.text.words import Word

LEVELS = (1.0, 0.7, 0.45, 0.25)  # index = the 2-bit code; 1.0: the block as trained
WORDS_PER_BYTE = 4


def level_bytes(n_words: int) -> int:
    """Bytes of the levels of ``n_words`` words (2 bits each)."""
    return -(-n_words // WORDS_PER_BYTE)


def pack_levels(levels: Sequence[float]) -> bytes:
    """2-bit codes of ``levels`` (each one of ``LEVELS``), four words a byte, first word in
    the low bits."""
    out = bytearray(level_bytes(len(levels)))
    for i, level in enumerate(levels):
        if level not in LEVELS:
            raise ValueError(f"strength {level!r} is not one of {LEVELS}")
        out[i // WORDS_PER_BYTE] |= LEVELS.index(level) << (2 * (i % WORDS_PER_BYTE))
    return bytes(out)


def unpack_levels(data: bytes, n_words: int) -> np.ndarray:
    """Inverse of ``pack_levels``: ``n_words`` levels (float32); empty ``data``: all 1.0."""
    if not data:
        return np.ones(n_words, dtype=np.float32)
    if len(data) != level_bytes(n_words):
        raise ContainerError(
            f"strength block holds {len(data)} bytes, expected {level_bytes(n_words)} for "
            f"{n_words} words: the file is damaged"
        )
    codes = [(data[i // WORDS_PER_BYTE] >> (2 * (i % WORDS_PER_BYTE))) & 3 for i in range(n_words)]
    return np.asarray([LEVELS[c] for c in codes], dtype=np.float32)


def nearest_word(words: Sequence[Word], height: int, width: int) -> np.ndarray | None:
    """HxW int32: for every pixel the index of the word whose polygon is nearest (a pixel in
    several polygons: the later word); None when no word has a usable polygon."""
    from textboost.text.guidance import word_masks

    labels = np.zeros((height, width), dtype=np.int32)
    for i, (y0, x0, m) in word_masks(words, height, width):
        win = labels[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]]
        win[m.astype(bool)] = i + 1
    if not labels.any():
        return None
    iy, ix = ndimage.distance_transform_edt(
        labels == 0, return_distances=False, return_indices=True
    )
    return labels[iy, ix] - 1


def strength_map(words: Sequence[Word], levels: Sequence[float], height: int, width: int):
    """HxW float32 strength of every pixel (``nearest_word``'s level); None: all 1.0."""
    levels = np.asarray(levels, dtype=np.float32)
    if len(levels) != len(words):
        raise ValueError(f"{len(words)} words but {len(levels)} strengths")
    if not len(levels) or bool((levels == 1.0).all()):
        return None
    near = nearest_word(words, height, width)
    return None if near is None else levels[near]


def container_map(words: Sequence[Word], colour_block: bytes, height: int, width: int):
    """The strength map of a container's levels (after its word colours); None when it has
    none (full strength, or no colour block: the paper's block)."""
    from textboost.text.colours import split_block

    if not words or not colour_block:
        return None
    levels = unpack_levels(split_block(colour_block, len(words))[1], len(words))
    return strength_map(words, levels, height, width)
