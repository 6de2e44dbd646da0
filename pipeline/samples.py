"""One reference in, one WebDataset sample out (or a ``Reject`` with its reason).

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
from collections import Counter
from dataclasses import dataclass, field

from pipeline.commit import dumps
from pipeline.image_io import decode_image, image_format, read_range
from pipeline.png import encode_png
from pipeline.sample_words import sample_words
from pipeline.sources import ANN_NONE, ANN_OCR, ANN_SYNTH, SampleRef
from textboost.errors import TextBoostError
from textboost.text.words import Word

SYNTH_JPEG_QUALITY = 90  # synthetic images made in the task: JPEG, as data.synth_sets.generate
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


def _synthetic(ref: SampleRef, spec: SampleSpec) -> tuple[bytes, list[Word]]:
    from textboost.data.synth import synth_image

    image, words = synth_image(ref.index, spec.synth_seed, **spec.synth)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=SYNTH_JPEG_QUALITY)
    return buf.getvalue(), list(words)


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
            words = sample_words(ref, image)
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
    from textboost.text.filtering import filter_words
    from textboost.text.guidance import render_guidance
    from textboost.text.side_info import decode_side_info, encode_side_info

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
