"""Per-sample work of the shard builder: one reference in, one WebDataset sample out.

Pure Python over ``textboost`` (never Ray). For each input image (paper 4.1, 5.1.4):
original bytes kept untouched (``jpg`` or ``png`` by their actual format), OCR words from
the annotations or the OCR engine, the average-character-area filter (``T_train`` for train,
``T_test`` for val), the side-info bytes, the guidance map rendered from the *decoded* side
info (exactly what the decoder will see), and a small ``meta.json``.

A corrupt image or a malformed annotation becomes a ``Reject`` with its reason; only I/O
errors other than "file not found" propagate, so the executor can retry the task.
"""

from __future__ import annotations

import io
import json
import warnings
from collections import Counter
from dataclasses import dataclass, field

import fsspec
import numpy as np
from PIL import Image

from pipeline.sources import (
    ANN_ERROR,
    ANN_ICDAR,
    ANN_NONE,
    ANN_OCR,
    ANN_SYNTH,
    ANN_TEXTOCR,
    SampleRef,
)
from textboost.errors import AnnotationError, ImageError, TextBoostError
from textboost.words import Word

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SYNTH_JPEG_QUALITY = 90  # synthetic images made in the task: JPEG, as textboost.synth.generate
GUIDE_PNG_LEVEL = 6  # zlib level of guide.png; changing it changes the shard bytes
FIELDS = ("guide.png", "meta.json", "ocr.json", "side.bin")  # plus "jpg" or "png"


@dataclass(frozen=True)
class SampleSpec:
    """What a shard task needs besides the references (all from the config)."""

    threshold: float  # data.filter.t_train (train) or t_test (val)
    side_info_format: str = "compact"
    synth: dict = field(default_factory=dict)  # synth_image keywords (from data.synth)
    synth_seed: int = 0


@dataclass(frozen=True)
class Reject:
    """An input that could not become a sample, and why (one line of ``rejected.jsonl``)."""

    key: str
    url: str
    reason: str

    def to_json(self) -> dict:
        return {"key": self.key, "url": self.url, "reason": self.reason}


def dumps(obj: object) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8 (same object, same bytes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def read_range(url: str, offset: int = -1, size: int = -1) -> bytes:
    """Whole file, or ``size`` bytes at ``offset`` (an image inside a tar)."""
    fs, path = fsspec.core.url_to_fs(url)
    if offset < 0:
        return fs.cat_file(path)
    data = fs.cat_file(path, start=offset, end=offset + size)
    if len(data) != size:
        raise ImageError(f"{url}: tar member at byte {offset} is truncated")
    return data


def image_format(data: bytes) -> str:
    """``jpg`` or ``png`` from the magic bytes (the file extension is not trusted)."""
    if data.startswith(JPEG_MAGIC):
        return "jpg"
    if data.startswith(PNG_MAGIC):
        return "png"
    raise ImageError(
        f"unsupported image format (first bytes {data[:8]!r}); shards keep original JPEG "
        "or PNG bytes only, convert the file to one of them"
    )


def decode_image(data: bytes, full: bool) -> tuple[Image.Image, tuple[int, int]]:
    """Decode enough to catch corrupt or truncated files; ``full`` for pixel access.

    Returns the image (reduced by DCT scaling unless ``full``) and its stored size (W, H);
    EXIF orientation is not applied: annotations refer to the stored pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            size = im.size
            if not full and im.format == "JPEG":
                # DCT scaling still walks the whole entropy-coded stream (catches
                # truncation) at a fraction of the cost of a full decode.
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"cannot decode image: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: {exc}") from None
    return im, size


def textocr_words(words_json: str) -> list[Word]:
    """The words a TextOCR reference carries (parsed and checked by ``read_textocr``)."""
    return [Word.from_json(w) for w in json.loads(words_json)]


_OCR_ENGINE = None


def ocr_words(image: Image.Image) -> list[Word]:
    """Words found by RapidOCR (one engine per process, one thread: reproducible)."""
    global _OCR_ENGINE
    from textboost.ocr import words_from_rapidocr

    if _OCR_ENGINE is None:
        from rapidocr_onnxruntime import RapidOCR

        _OCR_ENGINE = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
    result, _ = _OCR_ENGINE(np.asarray(image.convert("RGB")))
    return words_from_rapidocr(result)


def _synthetic(ref: SampleRef, spec: SampleSpec) -> tuple[bytes, list[Word]]:
    from textboost.synth import synth_image

    image, words = synth_image(ref.index, spec.synth_seed, **spec.synth)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=SYNTH_JPEG_QUALITY)
    return buf.getvalue(), list(words)


def _words(ref: SampleRef, image: Image.Image) -> list[Word]:
    if ref.ann_kind == ANN_TEXTOCR:
        return textocr_words(ref.ann)
    if ref.ann_kind == ANN_ERROR:
        raise AnnotationError(ref.ann)
    if ref.ann_kind == ANN_ICDAR:
        if not ref.ann:
            raise AnnotationError(f"no ground-truth file gt_{ref.id}.txt for this image")
        from textboost.ocr import read_icdar2015_gt

        try:
            data = read_range(ref.ann)
        except FileNotFoundError:
            raise AnnotationError(f"ground-truth file {ref.ann} is missing") from None
        return read_icdar2015_gt(data, name=ref.ann)
    if ref.ann_kind == ANN_OCR:
        return ocr_words(image)
    return []


def encode_png(array: np.ndarray) -> bytes:
    """Deterministic PNG of a uint8 HxW map (fixed zlib level, no metadata)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L").save(
        buf, "PNG", compress_level=GUIDE_PNG_LEVEL
    )
    return buf.getvalue()


def load_input(ref: SampleRef, spec: SampleSpec) -> tuple[bytes, list[Word] | None]:
    """The image bytes (and, for synthetic samples, their words). I/O errors propagate."""
    if ref.ann_kind == ANN_SYNTH or (ref.source == "synthetic" and not ref.image):
        data, words = _synthetic(ref, spec)
        return data, (words if ref.ann_kind == ANN_SYNTH else None)
    return read_range(ref.image, ref.offset, ref.size), None


def process_sample(ref: SampleRef, spec: SampleSpec) -> dict[str, bytes] | Reject:
    """One WebDataset sample (``__key__`` plus fields) or a ``Reject`` with its reason."""
    try:
        data, words = load_input(ref, spec)
    except FileNotFoundError:
        return Reject(ref.key, ref.image, "image file not found")
    except TextBoostError as exc:
        return Reject(ref.key, ref.image, f"{type(exc).__name__}: {exc}")
    try:
        fmt = image_format(data)
        image, (width, height) = decode_image(data, full=ref.ann_kind == ANN_OCR)
        if words is None:
            words = _words(ref, image)
        return build_fields(ref, spec, data, fmt, (width, height), words)
    except TextBoostError as exc:
        return Reject(ref.key, ref.image or ref.key, f"{type(exc).__name__}: {exc}")


def build_fields(
    ref: SampleRef,
    spec: SampleSpec,
    data: bytes,
    fmt: str,
    size: tuple[int, int],
    words: list[Word],
) -> dict[str, bytes]:
    """Filter -> side info -> decoded side info -> guidance map; plus ocr.json and meta.json."""
    from textboost.filtering import filter_words
    from textboost.guidance import render_guidance
    from textboost.side_info import decode_side_info, encode_side_info

    width, height = size
    kept, dropped = filter_words(words, spec.threshold)
    side_info = encode_side_info(kept, (width, height), fmt=spec.side_info_format)
    guidance_map = render_guidance(decode_side_info(side_info), height, width)  # HxW uint8
    reasons = Counter(_reason(d) for d in dropped)
    meta = {
        "source": ref.source,
        "id": ref.id,
        "width": width,
        "height": height,
        "format": fmt,
        "words": {"input": len(words), "kept": len(kept), "dropped": len(dropped)},
        "dropped": dict(sorted(reasons.items())),
        "words_from": {ANN_NONE: "none", ANN_OCR: "ocr"}.get(ref.ann_kind, "annotations"),
        "threshold": spec.threshold,
        "side_info_bytes": len(side_info),
    }
    ocr = {"width": width, "height": height, "words": [w.to_json() for w in kept]}
    return {
        "__key__": ref.key.encode(),
        fmt: data,
        "guide.png": encode_png(guidance_map),
        "meta.json": dumps(meta),
        "ocr.json": dumps(ocr),
        "side.bin": side_info,
    }


def _reason(dropped: tuple[Word, str]) -> str:
    """The category of a filter reason (``meta.json`` counts categories, not numbers)."""
    reason = str(dropped[1])
    if reason.startswith("avg char area"):
        return "avg char area > T"
    return reason.split(":", 1)[0]
