"""Encoder-side legibility control (``eval.select: legible``, ``textboost compress --select``).

The encoder holds the decoder, so it can look at what the decoder will show before it sends
anything, with its own OCR engine (the spotter it reads words with; RapidOCR here):

1. Decode the latents with no word: the refined backbone. Each candidate word (already
   through the average-character-area threshold T) that the spotter reads there (IoU > 0.5
   and the same transcription, the ICDAR end-to-end rule) is **not sent**: drawing it again
   costs bits and PSNR and gains nothing.
2. Draw the remaining words with the colour block and look at them at each strength of
   ``textboost.text.strength.LEVELS`` (the decoder shows ``x_ref + s * (x_fused - x_ref)``).
   Each word is sent at the **lowest strength at which it is still read**: the text path
   replaces a scene written in another font, so full strength costs PSNR that a blend
   towards the scene does not. A word read at no strength gets the strength that minimises
   its region's squared error, or is dropped when none beats sending nothing.

2 bits a word (in the colour block) say which strength; the rest of the container is the
paper's. It needs a colour model (``model.fusion: colour``); other models send the words
unchanged. Cost: one extra encode, one decode and ``1 + len(LEVELS)`` OCR passes an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from textboost.codec import image_codec
from textboost.model.padding import crop, padding_for
from textboost.text.words import Word


@dataclass
class Selection:
    """The words to send (a subset of the candidates, in their order) and the strength of
    each; what was dropped and why."""

    words: list[Word]
    levels: list[float]
    already_read: list[Word] = field(default_factory=list)  # read without side info
    unreadable: list[Word] = field(default_factory=list)  # read at no strength, not worth it


def _read(words: Sequence[Word], spotted) -> list[bool]:
    from textboost.scoring.f1 import match_image

    return [match_image([w], spotted).e2e_tp > 0 for w in words]


class _Preview:
    """The decoder's output for any subset of the candidates (``decoded`` words in the
    decoder's order, ``order[j]`` their index among the candidates)."""

    def __init__(self, model, image: Image.Image, candidates: list[Word], fmt: str):
        from textboost.codec import container
        from textboost.text.colours import colour_block
        from textboost.text.side_info import decode_side_info, encode_side_info_ordered

        self.model, self.size = model, (image.height, image.width)
        side, self.order = encode_side_info_ordered(candidates, image.size, fmt)
        self.decoded = decode_side_info(side)
        self.block = colour_block(np.asarray(image_codec.to_rgb8(image)), side, None)
        c = container.unpack(image_codec.encode_image(model, image, [], fmt))
        h, w = self.size
        padded = (h + c.padding[2] + c.padding[3], w + c.padding[0] + c.padding[1])
        strings = image_codec.guarded_strings(model, c.strings, *padded)
        shape = model.latent_shape(*padded)
        with torch.inference_mode(), image_codec._eval_mode(model):
            self.x_base = crop(model._decode_base(strings, shape), padding_for(h, w))
            self.x_ref = model.fuse(self.x_base, None).clamp(0, 1)

    def fused(self, keep: Sequence[int]) -> torch.Tensor:
        """Full-strength output with the decoded words ``keep`` (decoder order) sent."""
        if not keep:
            return self.x_ref
        words = [self.decoded[j] for j in keep]
        rows = [self.block[6 * j : 6 * j + 6] for j in keep]
        inputs = image_codec.fusion_inputs(self.model, words, b"".join(rows), *self.size)
        with torch.inference_mode(), image_codec._eval_mode(self.model):
            return self.model.fuse(self.x_base, **inputs).clamp(0, 1)


def choose_words(
    model, image: Image.Image, candidates: Sequence[Word], select: str, fmt: str = "compact",
    spotter=None, margin: int = 0,
) -> Selection:  # fmt: skip
    """The words to send and their strengths under ``select`` (``eval.select``): every
    candidate at full strength (``threshold``) or ``select_legible``'s choice (``legible``;
    ``spotter``: the OCR engine, RapidOCR's spotter when None)."""
    if select != "legible":
        return Selection(list(candidates), [1.0] * len(candidates))
    if spotter is None:
        from textboost.scoring.spotting import get_spotter

        spotter = get_spotter()
    return select_legible(model, image, candidates, spotter, fmt, margin)


def select_legible(
    model, image: Image.Image, candidates: Sequence[Word], spotter, fmt: str = "compact",
    margin: int = 0,
) -> Selection:  # fmt: skip
    """What to send of ``candidates`` and at which strength (module docstring); ``margin``:
    that many strengths above the lowest one read (a safety margin for other readers)."""
    from textboost.text import strength

    candidates = list(candidates)
    if not candidates or model.kind != "textboost" or not model.needs_colour:
        return Selection(candidates, [1.0] * len(candidates))
    model.ensure_updated()
    p = _Preview(model, image, candidates, fmt)
    read0 = _read(
        [candidates[i] for i in p.order], spotter.spot(image_codec.tensor_to_image(p.x_ref))
    )
    keep = [j for j, r in enumerate(read0) if not r]  # decoder order
    already = [candidates[p.order[j]] for j, r in enumerate(read0) if r]
    if not keep:
        return Selection([], [], already)
    diff = p.fused(keep) - p.x_ref
    words = [candidates[p.order[j]] for j in keep]
    read = {}
    for level in strength.LEVELS:
        shown = image_codec.tensor_to_image(p.x_ref + level * diff)
        read[level] = _read(words, spotter.spot(shown))
    best = _best_levels(p, keep, diff, np.asarray(image, dtype=np.float32) / 255.0)
    chosen, unreadable = [], []
    for k, j in enumerate(keep):
        ok = [level for level in strength.LEVELS if read[level][k]]
        level = best[k]
        if ok:
            level = strength.LEVELS[max(0, strength.LEVELS.index(min(ok)) - margin)]
        if level == 0.0:
            unreadable.append(words[k])
        else:
            chosen.append((p.order[j], level))
    chosen.sort()  # the candidates' order
    return Selection(
        [candidates[i] for i, _ in chosen], [lv for _, lv in chosen], already, unreadable
    )


def _best_levels(p: _Preview, keep: list[int], diff: torch.Tensor, original: np.ndarray):
    """Per kept word, the strength (``LEVELS`` or 0 = not sent) nearest to the one that
    minimises the squared error over the pixels nearest to it: ``-<e, d> / <d, d>`` with
    ``e`` the error without the word and ``d`` what it changes."""
    from textboost.text import strength

    h, w = p.size
    near = strength.nearest_word([p.decoded[j] for j in keep], h, w)
    if near is None:
        return [0.0] * len(keep)
    d = diff[0].permute(1, 2, 0).numpy().astype(np.float64)
    e = p.x_ref[0].permute(1, 2, 0).numpy().astype(np.float64) - original
    num = np.bincount(near.ravel(), -(e * d).sum(-1).ravel(), len(keep))
    den = np.bincount(near.ravel(), (d * d).sum(-1).ravel(), len(keep))
    s = np.clip(num / np.maximum(den, 1e-12), 0.0, 1.0)
    options = (*strength.LEVELS, 0.0)
    return [min(options, key=lambda v, x=x: abs(v - x)) for x in s]
