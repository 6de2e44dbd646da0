"""Padding of images (and their guidance maps) to the backbones' size multiple.

The backbones need H and W divisible by 64 (ELIC: 4 stride-2 analysis layers plus 2 in the
hyper-analysis). Images are padded (replicate) with the offsets of ``padding_for(h, w)``; the
backbone output is cropped back with the same offsets *before* the fusion block, so the
guidance map is always used at the image's own resolution and can never be misaligned with
it. The rate (bpp) is counted over the original pixel count (losses).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

PAD_MULTIPLE = 64

Padding = tuple[int, int, int, int]  # (left, right, top, bottom), F.pad order


def padding_for(height: int, width: int, multiple: int = PAD_MULTIPLE) -> Padding:
    """Symmetric padding that brings ``height`` x ``width`` up to multiples of ``multiple``."""
    new_h = (height + multiple - 1) // multiple * multiple
    new_w = (width + multiple - 1) // multiple * multiple
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return (left, new_w - width - left, top, new_h - height - top)


def pad(x: Tensor, multiple: int = PAD_MULTIPLE, mode: str = "replicate") -> tuple[Tensor, Padding]:
    """Pad BxCxHxW to multiples of ``multiple``; returns the padded tensor and its offsets.

    Use the same offsets for an image and its guidance map (``mode="constant"`` for the map).
    """
    padding = padding_for(x.shape[-2], x.shape[-1], multiple)
    if not any(padding):
        return x, padding
    return F.pad(x, padding, mode=mode), padding


def crop(x: Tensor, padding: Padding) -> Tensor:
    """Undo ``pad``: remove ``(left, right, top, bottom)`` from the last two dims."""
    left, right, top, bottom = padding
    h, w = x.shape[-2], x.shape[-1]
    return x[..., top : h - bottom, left : w - right]
