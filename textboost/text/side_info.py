"""Side-info codec: the filtered OCR words sent next to the image stream (paper 4.1, 5.1.3).

Its size counts in every reported bpp. One version byte selects the format:

* ``0x10`` **gzip** (the paper's baseline): gzip (level 9, mtime 0) of the UTF-8 JSON word
  list ``{"width", "height", "words": [{"points": [[x, y], ...], "text"}]}``, coordinates
  rounded to 0.01 px (``"legible": false`` only for illegible words).
* ``0x2m`` **compact** (ours): each word as its minimal rotated rectangle oriented along
  the reading direction (centre, length, height, angle), quantised (``POS_STEP``,
  ``SIZE_STEP``, ``ANGLE_STEPS`` per turn), words in a canonical order (by centre),
  columns of varints (centres delta coded) then UTF-8 texts, the columns compressed by
  the stdlib compressor ``m`` that gives the fewest bytes for this message (0 stored,
  1 raw deflate, 2 raw LZMA2, 3 bz2). Image size and word count stay uncompressed, so an
  empty word list costs a few bytes (6 for 1024 x 768).

Decoding is bounded: word count, points per word, text length, decompressed size and
coordinates are capped; anything corrupt, truncated or hostile raises ``SideInfoError``.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import math
import zlib
from dataclasses import dataclass

from textboost.errors import GeometryError, SideInfoError
from textboost.text.geometry import RotatedRect, min_rotated_rect
from textboost.text.words import Word
from textboost.varint import VarintError, put_uvarint, read_uvarint

GZIP, COMPACT = 0x10, 0x20
FORMATS = {"gzip": GZIP, "compact": COMPACT}
POS_STEP = 0.5  # px, rectangle centre
SIZE_STEP = 0.5  # px, rectangle length and height
ANGLE_STEPS = 1024  # per full turn: 0.35 degrees
MAX_SIDE = 1 << 16  # px, image width / height
MAX_WORDS = 10_000
MAX_POINTS = 1024  # per polygon (gzip format)
MAX_TEXT_BYTES = 1024  # UTF-8 bytes per word
MAX_COORD = float(1 << 20)  # px, |coordinate| and rectangle sides
MAX_PAYLOAD = 4 << 20  # decompressed bytes
_MAX_VARINT_BYTES = 7  # values < 2**49; every value is further bounded by its limit
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 16}]


@dataclass(frozen=True)
class SideInfo:
    """Decoded side info: the words and the size of the image they belong to."""

    words: list[Word]
    width: int
    height: int
    fmt: str


# --------------------------------------------------------------------------- varints


def _zz(v: int) -> int:
    return (v << 1) if v >= 0 else ((-v) << 1) - 1


def _unzz(v: int) -> int:
    return (v >> 1) if not v & 1 else -((v + 1) >> 1)


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def varint(self, limit: int, what: str) -> int:
        try:
            v, self.pos = read_uvarint(self.data, self.pos, len(self.data), _MAX_VARINT_BYTES)
        except VarintError as exc:
            if exc.truncated:
                raise SideInfoError(f"side info truncated while reading {what}") from None
            raise SideInfoError(f"side info has an over-long varint for {what}") from None
        if v > limit:
            raise SideInfoError(f"side info {what} = {v} exceeds the limit {limit}")
        return v

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise SideInfoError(f"side info truncated while reading {what}")
        self.pos += n
        return self.data[self.pos - n : self.pos]


# --------------------------------------------------------------------------- compressors


def _compress(method: int, data: bytes) -> bytes:
    if method == 0:
        return data
    if method == 1:
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
        return c.compress(data) + c.flush()
    if method == 2:
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    return bz2.compress(data, 9)


def _decompress(method: int, data: bytes, cap: int) -> bytes:
    """Bounded decompression: at most ``cap`` bytes out, whole stream, no trailing bytes."""
    if method == 0:
        if len(data) > cap:
            raise SideInfoError("side info payload exceeds the size limit")
        return data
    try:
        if method in (1, 4):  # 1: raw deflate, 4: gzip (baseline)
            d = zlib.decompressobj(-15 if method == 1 else 31)
            out = d.decompress(data, cap + 1)
            done, rest = d.eof, d.unused_data or d.unconsumed_tail
        elif method == 2:
            d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
            out = d.decompress(data, max_length=cap + 1)
            done, rest = d.eof, d.unused_data
        elif method == 3:
            d = bz2.BZ2Decompressor()
            out = d.decompress(data, max_length=cap + 1)
            done, rest = d.eof, d.unused_data
        else:
            raise SideInfoError(f"side info uses unknown compressor {method}")
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as exc:
        raise SideInfoError(f"side info payload does not decompress: {exc}") from None
    if len(out) > cap:
        raise SideInfoError(f"side info decompresses to more than {cap} bytes (refused)")
    if not done:
        raise SideInfoError("side info payload is truncated")
    if rest:
        raise SideInfoError("side info payload has trailing bytes")
    return out


# --------------------------------------------------------------------------- encode


def _check_size(image_size: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise SideInfoError(f"image_size must be (width, height), got {image_size!r}") from None
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise SideInfoError(f"image size {w}x{h} outside 1..{MAX_SIDE} px")
    return w, h


def _text_bytes(word: Word, i: int) -> bytes:
    data = word.text.encode("utf-8", "surrogatepass")
    if len(data) > MAX_TEXT_BYTES:
        raise SideInfoError(f"word {i}: text longer than {MAX_TEXT_BYTES} UTF-8 bytes")
    return data


def _num(v: float) -> float | int:
    r = round(float(v), 2)
    return int(r) if r.is_integer() else r


def _encode_gzip(words: list[Word], w: int, h: int) -> bytes:
    items = []
    for i, word in enumerate(words):
        _text_bytes(word, i)
        pts = [(float(x), float(y)) for x, y in word.polygon]
        if not 4 <= len(pts) <= MAX_POINTS:
            raise SideInfoError(f"word {i}: polygon needs 4..{MAX_POINTS} points")
        if not all(abs(x) <= MAX_COORD and abs(y) <= MAX_COORD for x, y in pts):
            raise SideInfoError(f"word {i}: coordinate not finite or beyond {MAX_COORD:g} px")
        item = {"points": [[_num(x), _num(y)] for x, y in pts], "text": word.text}
        if not word.legible:
            item["legible"] = False
        items.append(item)
    doc = {"width": w, "height": h, "words": items}
    blob = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return bytes([GZIP]) + gzip.compress(_capped(blob.encode("utf-8", "surrogatepass")), 9, mtime=0)


def _capped(payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise SideInfoError(
            f"side info of {len(payload)} bytes exceeds {MAX_PAYLOAD} (too many words)"
        )
    return payload


def quantize(word: Word) -> tuple[int, int, int, int, int]:
    """``(qx, qy, qlength - 1, qheight - 1, qangle)`` of the word's reading-oriented rectangle."""
    r = min_rotated_rect(word.polygon)
    qa = (round(r.angle * ANGLE_STEPS / 360.0) + ANGLE_STEPS // 2) % ANGLE_STEPS
    return (
        round(r.cx / POS_STEP),
        round(r.cy / POS_STEP),
        max(1, round(r.length / SIZE_STEP)) - 1,
        max(1, round(r.height / SIZE_STEP)) - 1,
        qa - ANGLE_STEPS // 2,
    )


def _encode_compact(words: list[Word], w: int, h: int) -> tuple[bytes, list[int]]:
    rows = []
    for i, word in enumerate(words):
        try:
            q = quantize(word)
        except GeometryError as exc:
            raise SideInfoError(f"word {i} ({word.text[:20]!r}): {exc}") from None
        if max(abs(q[0]), abs(q[1])) * POS_STEP > MAX_COORD or max(q[2:4]) * SIZE_STEP > MAX_COORD:
            raise SideInfoError(f"word {i}: rectangle beyond {MAX_COORD:g} px")
        rows.append((q[1], q[0], *q[2:], _text_bytes(word, i), word.legible, i))
    rows.sort()  # i only orders identical rows: the bytes do not depend on it
    order = [row[7] for row in rows]
    head = bytearray([COMPACT])
    for v in (w, h, len(rows)):
        put_uvarint(head, v)
    if not rows:
        return bytes(head), order
    cols: list[bytearray] = [bytearray() for _ in range(7)]
    px = py = 0
    for qy, qx, ql, qh, qa, text, _, _ in rows:
        put_uvarint(cols[0], _zz(qy - py))
        put_uvarint(cols[1], _zz(qx - px))
        put_uvarint(cols[2], ql)
        put_uvarint(cols[3], qh)
        put_uvarint(cols[4], _zz(qa))
        put_uvarint(cols[5], len(text))
        cols[6] += text
        px, py = qx, qy
    flags = bytearray()
    illegible = [i for i, row in enumerate(rows) if not row[6]]
    put_uvarint(flags, len(illegible))
    for i in illegible:
        put_uvarint(flags, i)
    payload = _capped(bytes(flags + b"".join(cols)))
    best = min((len(c), m, c) for m in range(4) for c in [_compress(m, payload)])
    head[0] = COMPACT | best[1]
    return bytes(head) + best[2], order


def encode_side_info(words: list[Word], image_size: tuple[int, int], fmt: str = "compact") -> bytes:
    """Side-info bytes of ``words`` for an image of ``image_size = (width, height)``."""
    return encode_side_info_ordered(words, image_size, fmt)[0]


def encode_side_info_ordered(
    words: list[Word], image_size: tuple[int, int], fmt: str = "compact"
) -> tuple[bytes, list[int]]:
    """``encode_side_info`` and the decoder's word order: ``order[j]`` is the index in
    ``words`` of the j-th word ``decode_side_info`` returns."""
    if fmt not in FORMATS:
        raise SideInfoError(f"unknown side-info format {fmt!r}; use one of {sorted(FORMATS)}")
    w, h = _check_size(image_size)
    words = list(words)
    if len(words) > MAX_WORDS:
        raise SideInfoError(f"{len(words)} words exceed the limit of {MAX_WORDS}")
    if fmt == "gzip":
        return _encode_gzip(words, w, h), list(range(len(words)))
    return _encode_compact(words, w, h)


# --------------------------------------------------------------------------- decode


def _decode_gzip(data: bytes) -> SideInfo:
    blob = _decompress(4, data[1:], MAX_PAYLOAD)
    try:
        doc = json.loads(blob)
        w, h = _check_size((doc["width"], doc["height"]))
        items = doc["words"]
        if not isinstance(items, list) or len(items) > MAX_WORDS:
            raise SideInfoError(f"'words' must be a list of at most {MAX_WORDS}")
        words = [_word_from_json(item) for item in items]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise SideInfoError(f"gzip side info is not a valid word list: {exc}") from None
    return SideInfo(words, w, h, "gzip")


def _word_from_json(item: dict) -> Word:
    pts, text = item["points"], item["text"]
    if not isinstance(text, str) or len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise SideInfoError(f"word text must be a string of <= {MAX_TEXT_BYTES} bytes")
    if not isinstance(pts, list) or not 4 <= len(pts) <= MAX_POINTS:
        raise SideInfoError(f"word polygon must have 4..{MAX_POINTS} points")
    poly = []
    for p in pts:
        x, y = p
        for v in (x, y):
            if isinstance(v, bool) or not isinstance(v, int | float) or not abs(v) <= MAX_COORD:
                raise SideInfoError(f"word coordinate {v!r} is not a number within {MAX_COORD:g}")
        poly.append((float(x), float(y)))
    legible = item.get("legible", True)
    if not isinstance(legible, bool):
        raise SideInfoError("word 'legible' must be a boolean")
    return Word(tuple(poly), text, legible)


def _decode_compact(data: bytes) -> SideInfo:
    head = _Reader(data, 1)
    w = head.varint(MAX_SIDE, "image width")
    h = head.varint(MAX_SIDE, "image height")
    n = head.varint(MAX_WORDS, "word count")
    _check_size((w, h))
    method = data[0] & 0x0F
    if n == 0:
        if head.pos != len(data) or method:
            raise SideInfoError("side info without words has trailing bytes")
        return SideInfo([], w, h, "compact")
    r = _Reader(_decompress(method, data[head.pos :], MAX_PAYLOAD))
    illegible = set()
    for _ in range(r.varint(n, "illegible count")):
        illegible.add(r.varint(n - 1, "illegible index"))
    pos_lim, size_lim = 2 * int(MAX_COORD / POS_STEP) + 1, int(MAX_COORD / SIZE_STEP)
    cols = [[r.varint(lim, what) for _ in range(n)] for lim, what in (
        (pos_lim, "centre y"), (pos_lim, "centre x"), (size_lim, "length"),
        (size_lim, "height"), (ANGLE_STEPS, "angle"), (MAX_TEXT_BYTES, "text length"),
    )]  # fmt: skip
    words, qx, qy = [], 0, 0
    for i in range(n):
        qy, qx = qy + _unzz(cols[0][i]), qx + _unzz(cols[1][i])
        qa = _unzz(cols[4][i])
        if max(abs(qx), abs(qy)) * POS_STEP > MAX_COORD or not -512 <= qa < 512:
            raise SideInfoError(f"side info word {i} has its centre or angle out of range")
        try:
            text = r.take(cols[5][i], "text").decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise SideInfoError(f"side info word {i} text is not UTF-8: {exc}") from None
        rect = RotatedRect(
            qx * POS_STEP,
            qy * POS_STEP,
            (cols[2][i] + 1) * SIZE_STEP,
            (cols[3][i] + 1) * SIZE_STEP,
            qa * 360.0 / ANGLE_STEPS,
        )
        words.append(Word(rect.corners(), text, legible=i not in illegible))
    if r.pos != len(r.data):
        raise SideInfoError("side info payload has trailing bytes")
    return SideInfo(words, w, h, "compact")


def decode_side_info_full(data: bytes) -> SideInfo:
    """Words, image size and format of side-info bytes; ``SideInfoError`` if they are bad."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SideInfoError(f"side info must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise SideInfoError("side info is empty (not even a version byte)")
    if data[0] == GZIP:
        return _decode_gzip(data)
    if data[0] & 0xF0 == COMPACT and data[0] & 0x0F < 4:
        return _decode_compact(data)
    raise SideInfoError(f"unknown side-info version byte 0x{data[0]:02x}")


def decode_side_info(data: bytes) -> list[Word]:
    """The words of side-info bytes (``decode_side_info_full`` also gives the image size)."""
    return decode_side_info_full(data).words


def bits_per_pixel(data: bytes, width: int, height: int) -> float:
    """What the side info adds to the bitrate of a ``width x height`` image."""
    return 8.0 * len(data) / (width * height) if width * height else math.inf
