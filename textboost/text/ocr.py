"""Readers of OCR annotations into ``Word`` records (paper 4.1, 5.1.1).

* TextOCR JSON (``imgs``, ``anns``, ``img2Anns``): the training file is ~200 MB with ~700k
  words. ``read_textocr`` parses it once with a ``json`` object hook that turns each
  annotation into flat columns as it is parsed (no dict per word survives the parse) and
  indexes the words by image. Illegible words carry the text ``"."``.
* ICDAR 2015 ground truth: one ``x1,y1,...,x4,y4,transcription`` line per word, UTF-8 with
  a BOM, commas allowed inside the transcription, ``###`` for illegible words.
* RapidOCR output: a list of ``[box 4x2, text, score]`` (or the ``(result, elapse)`` pair).
  The engine is built in one place (``rapidocr_engine``) and fed through one function
  (``run_rapidocr``): RapidOCR reads a numpy array as BGR, so RGB images are converted there.

Sources are fsspec URLs (path, ``file://``, ``memory://``, ``s3://``) or the file's bytes.
Malformed annotations raise ``AnnotationError`` naming the file and the annotation.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from array import array
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from textboost.errors import AnnotationError
from textboost.text.words import Word

TEXTOCR_ILLEGIBLE = "."
ICDAR_ILLEGIBLE = "###"
Source = str | bytes | bytearray | memoryview | os.PathLike


def read_bytes(source: Source, what: str = "annotation file") -> tuple[bytes, str]:
    """``(content, name)`` of an fsspec URL or of bytes given directly."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), "<bytes>"
    import fsspec

    url = os.fspath(source)
    try:
        with fsspec.open(url, "rb") as f:
            return f.read(), url
    except FileNotFoundError:
        raise AnnotationError(f"{what} {url} does not exist; check the path or URL") from None
    except (OSError, ValueError) as exc:
        raise AnnotationError(f"cannot read {what} {url}: {exc}") from None


def _number(v: Any) -> float:
    """A finite coordinate (Python or numpy number, never a bool) as float."""
    if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise ValueError(f"coordinate {v!r} is not a finite number")
    return float(v)


def _check_text_length(text: str) -> None:
    """A word must fit in the side info (``side_info.MAX_TEXT_BYTES`` UTF-8 bytes)."""
    if len(text) > 256:  # a character is <= 4 bytes: only then can it exceed 1024
        from textboost.text.side_info import MAX_TEXT_BYTES

        n = len(text.encode("utf-8", "surrogatepass"))
        if n > MAX_TEXT_BYTES:
            raise ValueError(
                f"text is {n} UTF-8 bytes, more than the {MAX_TEXT_BYTES} a word may carry"
            )


# --------------------------------------------------------------------------- TextOCR


@dataclass(frozen=True)
class ImageInfo:
    image_id: str
    width: int
    height: int
    file_name: str


@dataclass
class TextOCRIndex:
    """Words of a TextOCR file indexed by image id, stored as flat columns.

    ``words(image_id)`` raises ``AnnotationError`` when one of that image's annotations is
    malformed (``errors`` lists them), so a batch job can reject that image and go on.
    """

    source: str
    strict: bool = False
    images: dict[str, ImageInfo] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)  # image id -> messages
    parse_seconds: float = 0.0
    _coords: array = field(default_factory=lambda: array("d"))  # x0, y0, x1, y1, ...
    _starts: array = field(default_factory=lambda: array("q", [0]))  # per word, in floats
    _texts: list[str] = field(default_factory=list)
    _by_image: dict[str, array] = field(default_factory=dict)  # image id -> word indices

    def __len__(self) -> int:
        return len(self.images)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.images

    @property
    def num_words(self) -> int:
        return len(self._texts)

    def image_ids(self) -> list[str]:
        return sorted(self.images)

    def info(self, image_id: str) -> ImageInfo:
        if image_id not in self.images:
            raise AnnotationError(f"{self.source}: no image with id {image_id!r}")
        return self.images[image_id]

    def words(self, image_id: str) -> list[Word]:
        """The image's words in annotation order."""
        self.info(image_id)
        if image_id in self.errors:
            raise AnnotationError(f"{self.source}: " + "; ".join(self.errors[image_id]))
        out = []
        for i in self._by_image.get(image_id, ()):
            flat = self._coords[self._starts[i] : self._starts[i + 1]]
            text = self._texts[i]
            poly = tuple(zip(flat[0::2], flat[1::2]))
            out.append(Word(poly, text, legible=text != TEXTOCR_ILLEGIBLE))
        return out

    # -- parsing ------------------------------------------------------------------
    def _add_ann(self, ann: dict) -> None:
        ann_id, image_id = ann.get("id", "?"), ann.get("image_id")
        try:
            if not isinstance(image_id, str):
                raise ValueError("missing or non-string 'image_id'")
            text = ann.get("utf8_string")
            if not isinstance(text, str):
                raise ValueError("missing or non-string 'utf8_string'")
            _check_text_length(text)
            flat = ann.get("points")
            if flat is None and isinstance(ann.get("bbox"), list) and len(ann["bbox"]) == 4:
                x, y, w, h = (_number(v) for v in ann["bbox"])
                flat = [x, y, x + w, y, x + w, y + h, x, y + h]
            if not isinstance(flat, list) or len(flat) % 2 or len(flat) < 8:
                raise ValueError("'points' must be a flat list of >= 4 (x, y) pairs")
            values = [_number(v) for v in flat]
        except ValueError as exc:
            msg = f"annotation {ann_id!r}: {exc}"
            self.errors.setdefault(str(image_id), []).append(msg)
            if self.strict:
                raise AnnotationError(f"{self.source}: {msg}") from None
            return
        self._by_image.setdefault(image_id, array("q")).append(len(self._texts))
        self._coords.extend(values)
        self._starts.append(len(self._coords))
        self._texts.append(text)

    def _add_image(self, obj: dict) -> ImageInfo:
        try:
            info = ImageInfo(
                str(obj["id"]), int(obj["width"]), int(obj["height"]), str(obj["file_name"])
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise AnnotationError(f"{self.source}: malformed image entry {obj!r}: {exc}") from None
        if info.width <= 0 or info.height <= 0:
            raise AnnotationError(f"{self.source}: image {info.image_id!r} has size <= 0")
        return info

    def _hook(self, obj: dict) -> Any:
        if "utf8_string" in obj or "points" in obj:  # one annotation: into the columns
            self._add_ann(obj)
            return None
        if "width" in obj and "height" in obj and "file_name" in obj:
            return self._add_image(obj)
        if obj and all(isinstance(v, list) for v in obj.values()):
            return None  # img2Anns: the image_id of each annotation already says it
        return obj


def read_textocr(source: Source, *, strict: bool = False, name: str | None = None) -> TextOCRIndex:
    """Parse a TextOCR JSON file (fsspec URL or bytes) into a ``TextOCRIndex``.

    ``strict=True`` raises on the first malformed annotation instead of recording it;
    ``name`` labels bytes given directly in messages (the file they came from).
    """
    t0 = time.perf_counter()
    data, label = read_bytes(source, "TextOCR file")
    name = name or label
    index = TextOCRIndex(source=name, strict=strict)
    try:
        text = data.decode("utf-8-sig")
        del data  # the bytes go before parsing: peak memory is the text plus the index
        top = json.loads(text, object_hook=index._hook)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise AnnotationError(f"{name}: not a valid JSON file: {exc}") from None
    del text
    if not isinstance(top, dict) or not isinstance(top.get("imgs"), dict):
        raise AnnotationError(f"{name}: not a TextOCR file (needs 'imgs' and 'anns' objects)")
    if not isinstance(top.get("anns"), dict):
        raise AnnotationError(f"{name}: not a TextOCR file (needs 'imgs' and 'anns' objects)")
    for key, info in top["imgs"].items():
        if not isinstance(info, ImageInfo):
            raise AnnotationError(f"{name}: malformed image entry {key!r}")
        index.images[info.image_id] = info
    for image_id in list(index._by_image) + list(index.errors):
        if image_id not in index.images:
            msg = f"annotations refer to image {image_id!r}, which is not in 'imgs'"
            if strict:
                raise AnnotationError(f"{name}: {msg}")
            index._by_image.pop(image_id, None)
            index.errors.pop(image_id, None)
    index.parse_seconds = time.perf_counter() - t0
    return index


# --------------------------------------------------------------------------- ICDAR 2015


def _looks_like_content(source: str) -> bool:
    return (
        "\n" in source
        or source.count(",") >= 8
        or source.startswith("\ufeff")
        or not source.strip()
    )


def read_icdar2015_gt(source: Source, name: str | None = None) -> list[Word]:
    """Words of one ICDAR 2015 ground-truth file.

    ``source`` is the file's bytes, its decoded text (anything with a newline, >= 8 commas
    or a BOM, or empty) or an fsspec URL.
    """
    if isinstance(source, str) and _looks_like_content(source):
        text, label = source, name or "<text>"
    else:
        data, label = read_bytes(source, "ICDAR 2015 ground-truth file")
        label = name or label
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise AnnotationError(f"{label}: not UTF-8 text: {exc}") from None
    text = text.removeprefix("\ufeff")
    words = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        parts = line.split(",", 8)
        if len(parts) < 9:
            raise AnnotationError(
                f"{label} line {lineno}: expected x1,y1,...,x4,y4,transcription, got {line!r}"
            )
        try:
            values = [_number(float(p)) for p in parts[:8]]
        except ValueError as exc:
            raise AnnotationError(f"{label} line {lineno}: bad coordinate: {exc}") from None
        transcription = parts[8]
        try:
            _check_text_length(transcription)
        except ValueError as exc:
            raise AnnotationError(f"{label} line {lineno}: {exc}") from None
        poly = tuple(zip(values[0::2], values[1::2]))
        words.append(Word(poly, transcription, legible=transcription != ICDAR_ILLEGIBLE))
    return words


# --------------------------------------------------------------------------- RapidOCR


@lru_cache(maxsize=4)
def rapidocr_engine(threads: int = 1, text_score: float = 0.5):
    """The process-wide RapidOCR engine (the only place one is built; loading takes ~1 s).

    ``threads`` ONNX intra-op threads (1: reproducible, one engine per Ray task process),
    one inter-op thread; ``text_score`` is RapidOCR's own default (0.5).
    """
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(
        intra_op_num_threads=int(threads), inter_op_num_threads=1, text_score=float(text_score)
    )


def to_rapidocr(image: Any) -> np.ndarray:
    """An RGB image (PIL image of any mode, or an HxWx3 RGB / HxW gray uint8 array) as the
    contiguous HxWx3 **BGR** uint8 array RapidOCR expects (it reads arrays as OpenCV BGR)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        rgb = np.asarray(image.convert("RGB"))
    else:
        rgb = np.asarray(image)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(
                f"OCR input must be an RGB PIL image or an HxWx3 uint8 RGB array, got "
                f"{rgb.dtype} array of shape {rgb.shape}"
            )
    return np.ascontiguousarray(rgb[:, :, ::-1])


def run_rapidocr(image: Any, engine: Any = None, **kwargs: Any) -> list | None:
    """RapidOCR's raw result (``[[box, text, score], ...]`` or None) on an RGB image.

    Every OCR call site goes through here, so all of them see the same (BGR) pixels as
    ``textboost compress --ocr auto``. ``engine`` defaults to ``rapidocr_engine()``.
    """
    engine = rapidocr_engine() if engine is None else engine
    result, _ = engine(to_rapidocr(image), **kwargs)
    return result


def ocr_image_words(image: Any, min_score: float = 0.0) -> list[Word]:
    """Words RapidOCR finds in an RGB image (the shared engine; see ``run_rapidocr``)."""
    return words_from_rapidocr(run_rapidocr(image), min_score=min_score)


def words_from_rapidocr(result: Any, min_score: float = 0.0) -> list[Word]:
    """Words of a RapidOCR result: ``[[box 4x2, text, score], ...]``, None, or ``(result, elapse)``."""
    if isinstance(result, tuple) and len(result) == 2 and not isinstance(result[1], str):
        result = result[0]  # engine(img) returns (result, elapse)
    if result is None:
        return []
    if not isinstance(result, list | tuple):
        raise AnnotationError(f"RapidOCR result must be a list, got {type(result).__name__}")
    words = []
    for i, item in enumerate(result):
        try:
            box, text, score = item
            pts = [(_number(x), _number(y)) for x, y in box]
            if len(pts) < 4 or not isinstance(text, str):
                raise ValueError("box needs >= 4 points and text must be a string")
            score = _number(score)
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"RapidOCR result item {i}: malformed {item!r}: {exc}") from None
        if score >= min_score:
            words.append(Word(tuple(pts), text, legible=True))
    return words


# --------------------------------------------------------------------------- any


def read_annotations(source: Source, image_id: str | None = None) -> list[Word]:
    """Words from a TextOCR JSON (``image_id`` required) or an ICDAR 2015 gt file."""
    data, name = read_bytes(source)
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        index = read_textocr(data, name=name)
        if image_id is None:
            raise AnnotationError(f"{name} is a TextOCR file: give the image id")
        return index.words(image_id)
    return read_icdar2015_gt(data, name=name)
