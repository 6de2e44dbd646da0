"""Text spotting with RapidOCR at word level (paper 3.2, 5.1.3).

The paper scores reconstructions with a pre-trained end-to-end text spotter (UNITS); we use
RapidOCR (PP-OCRv4 detection + recognition, ONNX models shipped inside the
``rapidocr-onnxruntime`` wheel: offline, CPU). RapidOCR returns text LINES (a quadrilateral
and a string); ground truth (TextOCR, ICDAR 2015) is per WORD. Each line is split into words:

1. Character positions come from the recognizer's CTC alignment (RapidOCR's
   ``return_word_box``: one box per recognized non-space character).
2. Words are separated where the text has a space, and where the recognizer dropped one
   (PP-OCRv4's recognizer often drops the spaces of Latin text): two consecutive characters
   whose boxes are more than ``WORD_GAP`` line heights apart AND, when the image is given,
   an ink-free band of at least ``BLANK_RUN`` line heights between their centres in the
   rectified line crop (Otsu-binarized, ink = minority class). The CTC character boxes alone
   over-split wide letters (an italic "M"); the blank band alone could split letter-spaced
   words, so both must agree.
3. Each word gets the part of the line box between its characters: the box is cut along its
   principal direction (the longer pair of opposite edges) at the fractions where its first
   character starts and its last ends; the first and last words of a line keep the line's ends.
   Without usable character boxes the cut falls at character index i of n, at fraction i/n.

Settings are fixed (thread counts included) so the same image gives the same words.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

from textboost.errors import AnnotationError
from textboost.text.ocr import run_rapidocr
from textboost.text.words import Word

WORD_GAP = 0.25  # gap between character boxes (line heights) that may separate two words
BLANK_RUN = 0.25  # ink-free band (line heights) that confirms a word gap
CROP_HEIGHT = 32  # rectified line crop height for the blank-band test


def _axis(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a0, a1, b0, b1): the two long edges of a line box, both in reading direction."""
    horiz = np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3])
    vert = np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])
    if horiz >= vert:  # RapidOCR: clockwise from top-left; top edge p0->p1, bottom p3->p2
        return quad[0], quad[1], quad[3], quad[2]
    return quad[1], quad[2], quad[0], quad[3]  # tall box read top to bottom: text top on the right


def _cut(quad: np.ndarray, s: float, e: float) -> tuple[tuple[float, float], ...]:
    a0, a1, b0, b1 = _axis(quad)
    pts = (a0 + s * (a1 - a0), a0 + e * (a1 - a0), b0 + e * (b1 - b0), b0 + s * (b1 - b0))
    return tuple((float(x), float(y)) for x, y in pts)


def _check_quad(quad) -> np.ndarray:
    p = np.asarray(quad, dtype=np.float64)
    if p.shape != (4, 2) or not np.all(np.isfinite(p)):
        raise AnnotationError(f"an OCR line box needs 4 finite (x, y) points, got {quad!r}")
    return p


def _char_spans(quad: np.ndarray, char_boxes) -> list[tuple[float, float]] | None:
    """Fractions [start, end] of each character box along the line's principal axis."""
    a0, a1, _, _ = _axis(quad)
    length = float(np.linalg.norm(a1 - a0))
    if length <= 0:
        return None
    u = (a1 - a0) / length
    spans = []
    for box in char_boxes:
        pts = np.asarray(box, dtype=np.float64).reshape(-1, 2)
        t = (pts - a0) @ u / length
        spans.append((float(np.clip(t.min(), 0, 1)), float(np.clip(t.max(), 0, 1))))
    return spans


def _blank_profile(gray: np.ndarray, quad: np.ndarray) -> np.ndarray | None:
    """Per column of the rectified line crop (CROP_HEIGHT px high): True where no ink."""
    import cv2

    a0, a1, b0, b1 = _axis(quad)
    length = float(np.linalg.norm(a1 - a0))
    height = 0.5 * float(np.linalg.norm(b0 - a0) + np.linalg.norm(b1 - a1))
    if length < 2 or height < 2:
        return None
    width = max(2, round(length * CROP_HEIGHT / height))
    src = np.float32([a0, a1, b1, b0])
    dst = np.float32([[0, 0], [width, 0], [width, CROP_HEIGHT], [0, CROP_HEIGHT]])
    m = cv2.getPerspectiveTransform(src, dst)
    crop = cv2.warpPerspective(gray, m, (width, CROP_HEIGHT), flags=cv2.INTER_LINEAR)
    _, binary = cv2.threshold(crop, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = binary if binary.mean() < 0.5 else 1 - binary  # text is the minority class
    return ink.sum(axis=0) <= 1


def _longest_run(blank: np.ndarray, start: float, end: float) -> int:
    lo, hi = round(start * len(blank)), round(end * len(blank))
    best = run = 0
    for v in blank[max(lo, 0) : max(hi, 0)]:
        run = run + 1 if v else 0
        best = max(best, run)
    return best


def split_line(
    quad: Sequence[Sequence[float]],
    text: str,
    char_boxes: Sequence | None = None,
    gray: np.ndarray | None = None,
    word_gap: float = WORD_GAP,
) -> list[Word]:
    """Split one OCR line into word-level ``Word`` records (see the module docstring).

    ``gray`` (HxW uint8 of the whole image) enables the blank-band test.
    """
    p = _check_quad(quad)
    chars = [(i, ch) for i, ch in enumerate(text) if not ch.isspace()]
    if not chars:
        return []
    spans = _char_spans(p, char_boxes) if char_boxes is not None else None
    if spans is None or len(spans) != len(chars):  # fall back to character index positions
        n = len(text)
        spans = [(i / n, (i + 1) / n) for i, _ in chars]
    a0, a1, b0, b1 = _axis(p)
    length = float(np.linalg.norm(a1 - a0))
    height = 0.5 * float(np.linalg.norm(b0 - a0) + np.linalg.norm(b1 - a1))
    blank = _blank_profile(gray, p) if gray is not None else None
    groups: list[list[int]] = [[0]]
    for k in range(1, len(chars)):
        spaced = chars[k][0] > chars[k - 1][0] + 1  # whitespace between them in the text
        gap = (spans[k][0] - spans[k - 1][1]) * length
        split = height > 0 and gap > word_gap * height
        if split and blank is not None:
            centre = [(spans[j][0] + spans[j][1]) / 2 for j in (k - 1, k)]
            split = _longest_run(blank, *centre) >= BLANK_RUN * CROP_HEIGHT
        if spaced or split:
            groups.append([])
        groups[-1].append(k)
    words = []
    for g, idx in enumerate(groups):
        s = 0.0 if g == 0 else spans[idx[0]][0]
        e = 1.0 if g == len(groups) - 1 else spans[idx[-1]][1]
        word = "".join(chars[k][1] for k in idx)
        if e > s:
            words.append(Word(_cut(p, s, e), word, True))
    return words


class Spotter:
    """RapidOCR end-to-end spotter returning word-level ``Word`` records.

    One ONNX session per instance, fixed thread counts; calls are serialized with a lock.
    """

    def __init__(self, threads: int = 1, text_score: float = 0.5) -> None:
        from textboost.text.ocr import rapidocr_engine

        self.threads = threads
        self.text_score = text_score
        self._engine = rapidocr_engine(threads, text_score)
        self._lock = _engine_lock(threads, text_score)  # engines are shared per setting

    def lines(self, image: Image.Image) -> list[tuple]:
        """Raw line results: (box, text, score, char_boxes or None)."""
        with self._lock:
            result = run_rapidocr(
                image,
                self._engine,
                return_word_box=True,
                text_score=self.text_score,
                box_thresh=0.5,
                unclip_ratio=1.6,
            )
        out = []
        for item in result or []:
            box, text, score = item[0], str(item[1]), float(item[2])
            char_boxes = item[3] if len(item) > 3 and item[3] else None
            out.append((box, text, score, char_boxes))
        return out

    def spot(self, image: Image.Image) -> list[Word]:
        """Detected and recognized words of an image, in RapidOCR's reading order."""
        gray = np.asarray(image.convert("L"))
        words: list[Word] = []
        for box, text, _, char_boxes in self.lines(image):
            words.extend(split_line(box, text, char_boxes, gray))
        return words


@lru_cache(maxsize=4)
def _engine_lock(threads: int, text_score: float) -> threading.Lock:
    """One lock per shared engine (``textboost.text.ocr.rapidocr_engine`` caches by the same key)."""
    return threading.Lock()


@lru_cache(maxsize=2)
def get_spotter(threads: int = 1) -> Spotter:
    """A process-wide spotter (loading the ONNX models takes about a second)."""
    return Spotter(threads=threads)
