"""Training crops, one sample at a time (pure functions): decode a shard sample, cut a window
from image, guidance map and text mask alike, stack crops into a uint8 batch, and turn a
batch into model inputs. The loader (``pipeline.loader``) and the validation during training
(``pipeline.validation``) cut their crops with them.

Shard sample fields (docs/architecture.md "Sample fields"): ``jpg`` | ``png``, ``ocr.json``,
``guide.png``, ``side.bin``, ``meta.json``.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from textboost.errors import ShardError
from textboost.text.words import Word

IMAGE_KEYS = ("jpg", "png")


@dataclass
class Crop:
    """One training crop: uint8 arrays, ``image`` SxSx3, ``guidance`` and ``text_mask`` SxS."""

    image: np.ndarray
    guidance: np.ndarray
    text_mask: np.ndarray
    key: str = ""
    cmap: np.ndarray | None = None  # SxSx3 uint8 colour guidance (model.fusion=colour)
    box: np.ndarray | None = None  # SxS uint8 {0, 1} word boxes of the colour guidance
    # model.kind=taco_style: the sent words meeting the window, as word tokens in crop
    # coordinates (``textboost.model.text_adapter.word_tokens``: chars nxL uint8, boxes nx4)
    text: tuple[np.ndarray, np.ndarray] | None = None


def decode_sample(sample: dict) -> tuple[np.ndarray, np.ndarray, list[Word]]:
    """Shard sample -> (image HxWx3 uint8, guidance map HxW uint8, words). Raises ``ShardError``."""
    key = sample.get("__key__", "?")
    data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
    if data is None:
        raise ShardError(f"sample {key}: no jpg/png field (fields: {sorted(sample)})")
    for name in ("guide.png", "ocr.json"):
        if name not in sample:
            raise ShardError(f"sample {key}: missing field {name}; rebuild the shard")
    try:
        with Image.open(io.BytesIO(data)) as img:
            image = np.asarray(img.convert("RGB"))
        with Image.open(io.BytesIO(sample["guide.png"])) as img:
            guidance = np.asarray(img.convert("L"))
        ocr = json.loads(sample["ocr.json"])
        words = [Word.from_json(w) for w in ocr.get("words", [])]
    except (OSError, ValueError, KeyError, TypeError, SyntaxError) as exc:
        raise ShardError(f"sample {key}: cannot decode ({exc})") from exc
    if guidance.shape != image.shape[:2]:
        raise ShardError(
            f"sample {key}: guide.png is {guidance.shape[::-1]} but the image is "
            f"{image.shape[1::-1]}; rebuild the shard"
        )
    return image, guidance, words


def text_mask(words: list[Word], height: int, width: int) -> np.ndarray:
    """Binary mask (uint8 {0,1}) of the word polygons for L_gc (paper 4.3, Eq. 6)."""
    from textboost.text.guidance import render_text_mask

    return np.asarray(render_text_mask(words, height, width), dtype=np.uint8)


def crop_origin(
    h: int, w: int, words: list[Word], size: int, rng: random.Random, text_prob: float = 0.0
) -> tuple[int, int]:
    """Top-left ``(y0, x0)`` of a training window: uniform, or (with probability
    ``text_prob``, when the image has words) centred on a random word with a jitter of up to a
    quarter window, so stage 2 sees the sent words it must learn to draw."""
    if words and text_prob > 0 and rng.random() < text_prob:
        word = words[rng.randrange(len(words))]
        cx = sum(x for x, _ in word.polygon) / len(word.polygon)
        cy = sum(y for _, y in word.polygon) / len(word.polygon)
        jitter = size / 4
        y0 = round(cy - size / 2 + rng.uniform(-jitter, jitter))
        x0 = round(cx - size / 2 + rng.uniform(-jitter, jitter))
        return min(max(y0, 0), max(h - size, 0)), min(max(x0, 0), max(w - size, 0))
    return rng.randint(0, max(h - size, 0)), rng.randint(0, max(w - size, 0))


def _in_window(words: list[Word], x0: int, y0: int, size: int) -> list[Word]:
    """Words whose bounding box meets the window."""
    out = []
    for wd in words:
        xs, ys = [x for x, _ in wd.polygon], [y for _, y in wd.polygon]
        if max(xs) >= x0 and min(xs) < x0 + size and max(ys) >= y0 and min(ys) < y0 + size:
            out.append(wd)
    return out


def random_crop(
    image: np.ndarray,
    guidance: np.ndarray,
    words: list[Word],
    size: int,
    rng: random.Random,
    with_mask: bool = True,
    text_prob: float = 0.0,
    with_colour: bool = False,
    with_text: bool = False,
) -> Crop:
    """Cut the same ``size``x``size`` window from image, guidance map and text mask (and,
    ``with_colour``, the colour guidance: word colours measured on the whole image, as the
    encoder does, for the words that meet the window; ``with_text``, those words' tokens for
    a TACO-style encoder, boxes in crop coordinates).

    Images smaller than the crop are zero-padded at the bottom/right (the guidance map and
    mask too, so they stay aligned). The mask is rendered only inside the window.
    """
    h, w = image.shape[:2]
    y0, x0 = crop_origin(h, w, words, size, rng, text_prob)
    ch, cw = min(size, h), min(size, w)
    out_img = np.zeros((size, size, 3), np.uint8)
    out_guide = np.zeros((size, size), np.uint8)
    out_mask = np.zeros((size, size), np.uint8)
    out_img[:ch, :cw] = image[y0 : y0 + ch, x0 : x0 + cw]
    out_guide[:ch, :cw] = guidance[y0 : y0 + ch, x0 : x0 + cw]
    if with_mask and words:
        shifted = [
            Word(tuple((x - x0, y - y0) for x, y in wd.polygon), wd.text, wd.legible)
            for wd in words
        ]
        out_mask[:ch, :cw] = text_mask(shifted, ch, cw)
    crop = Crop(out_img, out_guide, out_mask)
    if with_colour:
        from textboost.text.colours import colour_guidance, word_colours

        near = _in_window(words, x0, y0, size)
        cmap, box = colour_guidance(out_guide, near, word_colours(image, near), (x0, y0))
        crop.cmap, crop.box = cmap, box
    if with_text:
        from textboost.model.text_adapter import word_tokens

        crop.text = word_tokens(_in_window(words, x0, y0, size), size, size, x0, y0)
    return crop


def collate(crops: list[Crop], skipped: int, worker: int) -> dict:
    """Stack crops into uint8 tensors (cheap to send between processes); see ``to_float``."""
    import torch

    out = {
        "image": torch.from_numpy(np.stack([c.image for c in crops])).permute(0, 3, 1, 2),
        "guidance": torch.from_numpy(np.stack([c.guidance for c in crops]))[:, None],
        "text_mask": torch.from_numpy(np.stack([c.text_mask for c in crops]))[:, None],
        "keys": [c.key for c in crops],
        "skipped": skipped,
        "worker": worker,
    }
    if crops and crops[0].cmap is not None:
        out["cmap"] = torch.from_numpy(np.stack([c.cmap for c in crops])).permute(0, 3, 1, 2)
        out["box"] = torch.from_numpy(np.stack([c.box for c in crops]))[:, None]
    if crops and crops[0].text is not None:
        from textboost.model.text_adapter import stack_tokens

        out["text"] = stack_tokens([c.text for c in crops])
    return out


def text_share(batch: dict) -> float:
    """Share of the batch's crops whose guidance map holds any glyph ink."""
    g = batch["guidance"]
    return float((g.flatten(1).amax(1) > 0).float().mean())


def to_float(batch: dict, device, non_blocking: bool = False) -> dict:
    """uint8 batch -> model inputs: image Bx3xSxS and guidance Bx1xSxS in [0,1], mask {0,1}."""
    out = {}
    for name in ("image", "guidance", "text_mask", "cmap", "box"):
        if name not in batch:
            continue
        t = batch[name].to(device, non_blocking=non_blocking).float()
        out[name] = t if name in ("text_mask", "box") else t / 255.0
    if "text" in batch:  # word tokens: ids, boxes and flags as they are
        out["text"] = {k: v.to(device, non_blocking=non_blocking) for k, v in batch["text"].items()}
    return out
