"""Baselines on the same images (paper 5.1.2): JPEG and WebP at matched bpp, and the backbone.

JPEG and WebP are encoded with Pillow at fixed settings (JPEG: optimized Huffman tables,
libjpeg's default 4:2:0 chroma subsampling; WebP: lossy, ``method=6``) so their bytes are
reproducible. ``match_bpp`` binary-searches the quality so the bpp is the closest to the target
(the TextBoost bpp of the same image, side info included) without exceeding it; when even the
lowest quality exceeds it, the lowest quality is used and the result says ``exceeded=True``.
The search assumes size grows with quality, which holds for both codecs up to rare one-step
wiggles.

The backbone baseline decodes the SAME latent strings as TextBoost with the fusion block
skipped (see ``decode_backbone``): same stage-1 weights, same image bits, no guidance; its
bpp counts the container without the side-info block.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from textboost.errors import ImageError

QUALITY_RANGE: dict[str, tuple[int, int]] = {"jpeg": (1, 100), "webp": (0, 100)}


@dataclass(frozen=True)
class MatchedEncoding:
    """One baseline encoding at a target bpp."""

    codec: str
    quality: int
    data: bytes
    bpp: float
    target_bpp: float
    exceeded: bool  # even the lowest quality is above the target


def encode(image: Image.Image, codec: str, quality: int) -> bytes:
    """JPEG or WebP bytes of an RGB image at one quality (deterministic)."""
    if codec not in QUALITY_RANGE:
        raise ValueError(f"unknown baseline codec {codec!r}; choose one of {list(QUALITY_RANGE)}")
    buf = io.BytesIO()
    rgb = image.convert("RGB")
    if codec == "jpeg":
        rgb.save(buf, format="JPEG", quality=int(quality), optimize=True)
    else:
        rgb.save(buf, format="WEBP", quality=int(quality), method=6)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    """RGB image of JPEG/WebP/PNG bytes."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except Exception as exc:  # PIL raises several types for bad data
        raise ImageError(f"cannot decode baseline image bytes ({len(data)} bytes): {exc}") from exc


def match_bpp(image: Image.Image, codec: str, target_bpp: float) -> MatchedEncoding:
    """Highest quality whose bpp does not exceed ``target_bpp`` (binary search)."""
    lo, hi = QUALITY_RANGE.get(codec, (None, None))
    if lo is None:
        raise ValueError(f"unknown baseline codec {codec!r}; choose one of {list(QUALITY_RANGE)}")
    pixels = image.width * image.height
    cache: dict[int, bytes] = {}

    def size_bpp(q: int) -> float:
        if q not in cache:
            cache[q] = encode(image, codec, q)
        return len(cache[q]) * 8.0 / pixels

    if size_bpp(lo) > target_bpp:
        return MatchedEncoding(codec, lo, cache[lo], size_bpp(lo), target_bpp, True)
    best = lo
    left, right = lo + 1, hi
    while left <= right:  # invariant: size_bpp(best) <= target
        mid = (left + right) // 2
        if size_bpp(mid) <= target_bpp:
            best, left = mid, mid + 1
        else:
            right = mid - 1
    return MatchedEncoding(codec, best, cache[best], size_bpp(best), target_bpp, False)


def decode_backbone(model, data: bytes) -> Image.Image:
    """Decode a TextBoost container's latent strings with the backbone alone.

    Same entropy decoding as ``textboost.codec.decode_container``; the image is the backbone
    decoder's output ``x_base``, before the fusion block (no guidance map involved).
    """
    import torch

    from textboost import container
    from textboost.codec import tensor_to_image
    from textboost.errors import ContainerError

    c = container.unpack(data)
    if c.model_id != model.identity():
        raise ContainerError(
            f"container was encoded with model {c.model_id}, not {model.identity()}: decode it "
            "with the checkpoint that encoded it"
        )
    left, right, top, bottom = c.padding
    shape = model.latent_shape(c.height + top + bottom, c.width + left + right)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model.ensure_updated()
            out = model.decompress(c.strings, shape, None, size=(c.height, c.width))
    except (RuntimeError, ValueError, AssertionError, IndexError, OverflowError) as exc:
        raise ContainerError(f"latent strings could not be entropy-decoded: {exc}") from None
    finally:
        model.train(was_training)
    return tensor_to_image(out["x_base"])


def backbone_container(data: bytes, side_info_format: str = "compact") -> bytes:
    """The same container with an empty side-info block: what the backbone alone transmits."""
    from textboost import container
    from textboost.side_info import encode_side_info

    c = container.unpack(data)
    empty = encode_side_info([], (c.width, c.height), side_info_format)
    return container.pack(
        container.Container(c.model_id, c.width, c.height, c.padding, empty, c.strings)
    )
