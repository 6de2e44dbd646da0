"""Baselines on the same images (paper 5.1.2): JPEG, WebP and AVIF at matched bpp, and the backbone.

JPEG, WebP and AVIF are encoded with Pillow at fixed settings (JPEG: optimized Huffman tables,
libjpeg's default 4:2:0 chroma subsampling; WebP: lossy, ``method=6``; AVIF: see
``AVIF_OPTIONS``) so their bytes are reproducible. ``match_bpp`` binary-searches the quality so
the bpp is the closest to the target (the TextBoost bpp of the same image, side info included)
without exceeding it; when even the lowest quality exceeds it, the lowest quality is used and
the result says ``exceeded=True``. The search assumes size grows with quality, which holds for
all three codecs up to rare one-step wiggles (AVIF's 101 qualities map onto 64 quantizers, so
neighbouring qualities can give the same bytes).

``image_baseline`` runs one of the Pillow methods (``IMAGE_BASELINES``):

* ``jpeg``, ``webp``, ``avif``: the codec at the matched bpp;
* ``avif_min``: AVIF at its lowest quality (0), whatever bpp that gives: AVIF's rate floor,
  usually above the TextBoost bpp;
* ``avif_half``: the classic way below that floor: the image downscaled 2x (LANCZOS, to
  ``ceil(W/2) x ceil(H/2)``), AVIF at the matched bpp, decoded and upscaled back to ``W x H``
  (LANCZOS again). Its bpp is every byte of the AVIF file over the ORIGINAL ``W * H`` pixels.

Every byte of each file counts in its bpp (headers and container boxes included).

The backbone baseline decodes the SAME latent strings as TextBoost with the fusion block
skipped (see ``decode_backbone``): same stage-1 weights, same image bits, no guidance; its
bpp counts the container without the side-info block.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from textboost.errors import ImageError

QUALITY_RANGE: dict[str, tuple[int, int]] = {"jpeg": (1, 100), "webp": (0, 100), "avif": (0, 100)}
IMAGE_BASELINES = ("jpeg", "webp", "avif", "avif_min", "avif_half")  # the Pillow-coded methods
# AVIF through Pillow's libavif with the aom encoder (what Pillow's wheels ship): libavif's
# default speed 6, 4:2:0, full range, one thread and one tile (no thread or tiling dependence),
# no ICC profile / Exif / XMP (nothing but the image in the file).
AVIF_OPTIONS = dict(
    codec="aom", speed=6, subsampling="4:2:0", range="full", max_threads=1, autotiling=False,
    tile_rows=0, tile_cols=0, icc_profile=b"",
)  # fmt: skip
RESAMPLE = Image.Resampling.LANCZOS  # avif_half: down- and upscaling filter


@dataclass(frozen=True)
class MatchedEncoding:
    """One baseline encoding at a target bpp."""

    codec: str
    quality: int
    data: bytes
    bpp: float
    target_bpp: float
    exceeded: bool  # even the lowest quality is above the target


def _check_avif() -> None:
    import PIL
    from PIL import features

    from textboost.errors import ConfigError

    if not features.check("avif"):
        raise ConfigError(
            f"this Pillow ({PIL.__version__}) cannot write AVIF: install Pillow >= 11.3 "
            "from its wheels (they include libavif), or drop the avif baselines from eval.baselines"
        )
    from PIL import _avif

    if not _avif.encoder_codec_available(AVIF_OPTIONS["codec"]):
        raise ConfigError(
            f"Pillow's libavif has no {AVIF_OPTIONS['codec']!r} encoder ({_avif.codec_versions()})"
        )


def encode(image: Image.Image, codec: str, quality: int) -> bytes:
    """JPEG, WebP or AVIF bytes of an RGB image at one quality (deterministic)."""
    if codec not in QUALITY_RANGE:
        raise ValueError(f"unknown baseline codec {codec!r}; choose one of {list(QUALITY_RANGE)}")
    buf = io.BytesIO()
    rgb = image.convert("RGB")
    if codec == "jpeg":
        rgb.save(buf, format="JPEG", quality=int(quality), optimize=True)
    elif codec == "webp":
        rgb.save(buf, format="WEBP", quality=int(quality), method=6)
    else:
        _check_avif()
        rgb.save(buf, format="AVIF", quality=int(quality), **AVIF_OPTIONS)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    """RGB image of JPEG/WebP/AVIF/PNG bytes."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except Exception as exc:  # PIL raises several types for bad data
        raise ImageError(f"cannot decode baseline image bytes ({len(data)} bytes): {exc}") from exc


def match_bpp(
    image: Image.Image, codec: str, target_bpp: float, pixels: int | None = None
) -> MatchedEncoding:
    """Highest quality whose bpp does not exceed ``target_bpp`` (binary search). The bpp is
    over ``pixels`` (default: those of ``image``; avif_half passes the original's)."""
    lo, hi = QUALITY_RANGE.get(codec, (None, None))
    if lo is None:
        raise ValueError(f"unknown baseline codec {codec!r}; choose one of {list(QUALITY_RANGE)}")
    pixels = image.width * image.height if pixels is None else pixels
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


def half_size(image: Image.Image) -> Image.Image:
    """The image downscaled 2x (``ceil(W/2) x ceil(H/2)``, LANCZOS): avif_half's input."""
    return image.convert("RGB").resize(((image.width + 1) // 2, (image.height + 1) // 2), RESAMPLE)


def image_baseline(
    image: Image.Image, method: str, target_bpp: float
) -> tuple[MatchedEncoding, Image.Image]:
    """One Pillow baseline (``IMAGE_BASELINES``) of ``image`` for the target bpp: its encoding
    (bpp: every byte of the file over the pixels of ``image``) and its reconstruction, at the
    size of ``image``."""
    if method in QUALITY_RANGE:
        m = match_bpp(image, method, target_bpp)
        return m, decode(m.data)
    if method == "avif_min":
        q = QUALITY_RANGE["avif"][0]
        data = encode(image, "avif", q)
        bpp = len(data) * 8.0 / (image.width * image.height)
        return MatchedEncoding("avif", q, data, bpp, target_bpp, bpp > target_bpp), decode(data)
    if method == "avif_half":
        m = match_bpp(half_size(image), "avif", target_bpp, pixels=image.width * image.height)
        return m, decode(m.data).resize(image.size, RESAMPLE)
    raise ValueError(f"unknown baseline {method!r}; choose one of {list(IMAGE_BASELINES)}")


def decode_backbone(model, data: bytes) -> Image.Image:
    """Decode a TextBoost container's latent strings with the backbone alone.

    Same entropy decoding as ``textboost.codec.image_codec.decode_container``; the image is the backbone
    decoder's output ``x_base``, before the fusion block (no guidance map involved).
    """
    import torch

    from textboost.codec import container
    from textboost.codec.image_codec import tensor_to_image
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
    from textboost.codec import container
    from textboost.text.side_info import encode_side_info

    c = container.unpack(data)
    empty = encode_side_info([], (c.width, c.height), side_info_format)
    return container.pack(
        container.Container(c.model_id, c.width, c.height, c.padding, empty, c.strings)
    )
