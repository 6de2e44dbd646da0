"""The words of a sample: from its source's annotations (TextOCR, ICDAR 2015) or by OCR."""

from __future__ import annotations

import json

from PIL import Image

from pipeline.image_io import read_range
from pipeline.sources import ANN_ERROR, ANN_ICDAR, ANN_OCR, ANN_TEXTOCR, SampleRef
from textboost.errors import AnnotationError
from textboost.text.words import Word


def textocr_words(words_json: str) -> list[Word]:
    """The words a TextOCR reference carries (parsed and checked by ``read_textocr``)."""
    return [Word.from_json(w) for w in json.loads(words_json)]


def ocr_words(image: Image.Image) -> list[Word]:
    """Words found by RapidOCR (the shared one-thread engine: reproducible; RGB -> BGR)."""
    from textboost.text.ocr import ocr_image_words

    return ocr_image_words(image)


def annotation_words(ref: SampleRef, subject: str = "this image") -> list[Word] | None:
    """The ground truth of ``ref`` from its source's annotation (TextOCR, ICDAR 2015); None
    when the source has none (words by OCR at build time, or no words). A bad annotation
    raises ``AnnotationError`` (``subject`` names the image), a vanished ICDAR ground-truth
    file ``FileNotFoundError``."""
    if ref.ann_kind == ANN_TEXTOCR:
        return textocr_words(ref.words_json)
    if ref.ann_kind == ANN_ERROR:
        raise AnnotationError(ref.reject)
    if ref.ann_kind == ANN_ICDAR:
        if not ref.gt_url:
            raise AnnotationError(f"no ground-truth file gt_{ref.id}.txt for {subject}")
        from textboost.text.ocr import read_icdar2015_gt

        return read_icdar2015_gt(read_range(ref.gt_url), name=ref.gt_url)
    return None


def sample_words(ref: SampleRef, image: Image.Image) -> list[Word]:
    """The words of ``ref`` (``image``: its decoded pixels, for OCR); [] for none."""
    try:
        words = annotation_words(ref)
    except FileNotFoundError:
        raise AnnotationError(f"ground-truth file {ref.gt_url} is missing") from None
    if words is not None:
        return words
    return ocr_words(image) if ref.ann_kind == ANN_OCR else []
