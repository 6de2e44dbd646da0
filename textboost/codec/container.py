"""The ``.tbx`` codec container: side info + latent strings in one file (paper 4.1, 5.1.3).

Pure struct parsing, no torch. Every byte counts in the reported bpp, so the layout is
compact (``varint`` = unsigned LEB128, at most 5 bytes)::

    magic        3  b"TBX"
    version      1  FORMAT_VERSION
    model id     8  TextBoost.identity(): sha256 prefix of model config + weights
    width        varint  original image size (1..MAX_SIDE)
    height       varint
    padding      4  u8 x 4: left, right, top, bottom (to multiples of 64)
    side info    varint length + side-info bytes (textboost.text.side_info)
    colours      version 2 only: varint length + 6 bytes per side-info word (text and
                 background RGB, textboost.text.colours), for ``model.fusion=colour``
    strings      u8 number of string lists, u8 strings per list (batch),
                 then per string: varint length + bytes (compressai ``strings`` list of lists)
    checksum     4  crc32 (little-endian) of everything before it

Parsing is bounded: the checksum is verified first, every length is checked against the bytes
that remain, counts and sizes are capped, trailing bytes are refused. Any damage raises
``ContainerError``; nothing is allocated beyond the input's own size.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from textboost.errors import ContainerError
from textboost.varint import VarintError, read_uvarint, uvarint

MAGIC = b"TBX"
FORMAT_VERSION = 1  # written when there is no colour block (paper fusion block)
COLOUR_VERSION = 2  # written with a colour block
VERSIONS = (FORMAT_VERSION, COLOUR_VERSION)
MODEL_ID_BYTES = 8
MAX_SIDE = 1 << 15  # largest width/height a container may declare
MAX_PIXELS = 1 << 25  # ~33.5 MP: default limit for encoding and decoding (--max-pixels)
MAX_STRING_LISTS = 64  # ELIC uses 11, the hyperprior 2, TCM model.tcm_slices + 1 (<= 33)
MAX_BATCH = 16
_MAX_VARINT_BYTES = 5  # values < 2**35; lengths are further bounded by the input size
_U32 = struct.Struct("<I")
MIN_SIZE = len(MAGIC) + 1 + MODEL_ID_BYTES + 1 + 1 + 4 + 1 + 2 + 4


@dataclass
class Container:
    """One encoded image: who encoded it, its size, the side info and the latent strings."""

    model_id: str  # 16 hex chars
    width: int
    height: int
    padding: tuple[int, int, int, int]  # left, right, top, bottom
    side_info: bytes
    strings: list[list[bytes]] = field(default_factory=list)
    colours: bytes = b""  # word colours (version 2); empty: version 1

    @property
    def latent_bytes(self) -> int:
        return sum(len(s) for ss in self.strings for s in ss)


def pack(c: Container) -> bytes:
    """Serialise ``c`` (raises ``ContainerError`` for values the format cannot hold)."""
    try:
        model_id = bytes.fromhex(c.model_id)
    except (ValueError, TypeError):
        model_id = b""
    if len(model_id) != MODEL_ID_BYTES:
        raise ContainerError(
            f"model id must be {2 * MODEL_ID_BYTES} hex characters, got {c.model_id!r}"
        )
    if not (1 <= c.width <= MAX_SIDE and 1 <= c.height <= MAX_SIDE):
        raise ContainerError(f"image size {c.width}x{c.height} outside 1..{MAX_SIDE}")
    if len(c.padding) != 4 or not all(0 <= p <= 255 for p in c.padding):
        raise ContainerError(f"padding {c.padding} must be 4 values in 0..255")
    if len(c.strings) > MAX_STRING_LISTS or any(len(ss) > MAX_BATCH for ss in c.strings):
        raise ContainerError("too many latent strings for the container format")
    batch = len(c.strings[0]) if c.strings else 0
    if any(len(ss) != batch for ss in c.strings):
        raise ContainerError("every latent string list must hold one string per image")
    parts = [
        MAGIC,
        bytes([COLOUR_VERSION if c.colours else FORMAT_VERSION]),
        model_id,
        uvarint(c.width),
        uvarint(c.height),
        bytes(c.padding),
        uvarint(len(c.side_info)),
        bytes(c.side_info),
    ]
    if c.colours:
        parts += [uvarint(len(c.colours)), bytes(c.colours)]
    parts.append(bytes([len(c.strings), batch]))
    for ss in c.strings:
        for s in ss:
            parts += [uvarint(len(s)), bytes(s)]
    body = b"".join(parts)
    return body + _U32.pack(zlib.crc32(body))


class _Reader:
    """Bounded reader: every read is checked against the bytes that remain."""

    def __init__(self, data: bytes, end: int):
        self.data, self.pos, self.end = data, 0, end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.end - self.pos:
            raise ContainerError(
                f"truncated or damaged container: {what} needs {n} bytes, "
                f"{self.end - self.pos} remain"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self, what: str) -> int:
        try:
            value, self.pos = read_uvarint(self.data, self.pos, self.end, _MAX_VARINT_BYTES)
        except VarintError as exc:
            if exc.truncated:
                raise ContainerError(
                    f"truncated or damaged container: {what} needs 1 bytes, 0 remain"
                ) from None
            raise ContainerError(f"damaged container: {what} is not a valid varint") from None
        return value


def unpack(data: bytes) -> Container:
    """Parse container bytes; any damage, truncation or foreign file -> ``ContainerError``."""
    data = bytes(data)
    if data[: len(MAGIC)] != MAGIC:
        raise ContainerError(
            "not a TextBoost container (.tbx): wrong magic bytes; encode it with "
            "`textboost compress`"
        )
    if len(data) > len(MAGIC) and data[len(MAGIC)] not in VERSIONS:
        raise ContainerError(
            f"container format version {data[len(MAGIC)]} is not supported (this software "
            f"reads versions {VERSIONS}); decode it with the textboost version that wrote it"
        )
    if len(data) < MIN_SIZE:
        raise ContainerError(f"truncated container: only {len(data)} bytes")
    (stored,) = _U32.unpack(data[-4:])
    if zlib.crc32(data[:-4]) != stored:
        raise ContainerError("container checksum mismatch: the file is damaged or truncated")
    r = _Reader(data, len(data) - 4)
    r.take(len(MAGIC) + 1, "header")
    model_id = r.take(MODEL_ID_BYTES, "model id").hex()
    width, height = r.varint("width"), r.varint("height")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ContainerError(f"container declares image size {width}x{height} (max {MAX_SIDE})")
    padding = tuple(r.take(4, "padding"))
    side_info = r.take(r.varint("side-info length"), "side info")
    colours = b""
    if data[len(MAGIC)] == COLOUR_VERSION:
        colours = r.take(r.varint("colour-block length"), "colour block")
        if not colours:
            raise ContainerError("damaged container: version 2 with an empty colour block")
    n_lists, batch = r.take(2, "string counts")
    if n_lists > MAX_STRING_LISTS or batch > MAX_BATCH:
        raise ContainerError(f"container declares {n_lists}x{batch} latent strings (too many)")
    strings = []
    for i in range(n_lists):
        row = []
        for _ in range(batch):
            n = r.varint(f"length of latent string {i}")
            row.append(r.take(n, f"latent string {i}"))
        strings.append(row)
    if r.pos != r.end:
        raise ContainerError(f"container has {r.end - r.pos} unexpected trailing bytes")
    return Container(model_id, width, height, padding, side_info, strings, colours)


def describe(data: bytes) -> dict:
    """Size split of a container: bytes and bits per pixel of image vs side-info streams."""
    c = unpack(data)
    pixels = c.width * c.height
    side = len(c.side_info) + len(c.colours)  # the word colours are side info too
    overhead = len(data) - c.latent_bytes - side
    return {
        "width": c.width,
        "height": c.height,
        "model_id": c.model_id,
        "total_bytes": len(data),
        "image_bytes": c.latent_bytes,
        "side_info_bytes": side,
        "colour_bytes": len(c.colours),
        "overhead_bytes": overhead,
        "bpp_total": 8 * len(data) / pixels,
        "bpp_image": 8 * c.latent_bytes / pixels,
        "bpp_side_info": 8 * side / pixels,
        "bpp_overhead": 8 * overhead / pixels,
    }
