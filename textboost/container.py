"""The ``.tbx`` codec container: side info + latent strings in one file (paper 4.1, 5.1.3).

Pure struct parsing, no torch. Layout (little-endian)::

    magic        4  b"TBX\\x1a"
    version      1  FORMAT_VERSION
    flags        1  0 (reserved)
    model id    16  TextBoost.identity(): sha256 prefix of model config + weights
    width        4  u32  original image size
    height       4  u32
    padding      8  4 x u16  left, right, top, bottom (to multiples of 64)
    side info    4 + n  u32 length + side-info bytes (textboost.side_info)
    strings      2 + 2  u16 number of string lists, u16 strings per list (batch)
                 then per string: u32 length + bytes (compressai ``strings`` list of lists)
    checksum     4  crc32 of everything before it

Parsing is bounded: the checksum is verified first, every length is checked against the bytes
that remain, counts and sizes are capped, trailing bytes are refused. Any damage raises
``ContainerError``; nothing is allocated beyond the input's own size.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from textboost.errors import ContainerError

MAGIC = b"TBX\x1a"
FORMAT_VERSION = 1
MAX_SIDE = 1 << 15  # largest width/height a container may declare
MAX_STRING_LISTS = 64  # ELIC uses 11, the hyperprior 2
MAX_BATCH = 16

_HEADER = struct.Struct("<4sBB16sII4HI")  # up to and including the side-info length
_COUNTS = struct.Struct("<HH")
_U32 = struct.Struct("<I")


@dataclass
class Container:
    """One encoded image: who encoded it, its size, the side info and the latent strings."""

    model_id: str  # 32 hex chars
    width: int
    height: int
    padding: tuple[int, int, int, int]  # left, right, top, bottom
    side_info: bytes
    strings: list[list[bytes]] = field(default_factory=list)

    @property
    def latent_bytes(self) -> int:
        return sum(len(s) for ss in self.strings for s in ss)


def pack(c: Container) -> bytes:
    """Serialise ``c`` (raises ``ContainerError`` for values the format cannot hold)."""
    try:
        model_id = bytes.fromhex(c.model_id)
    except ValueError:
        raise ContainerError(f"model id must be 32 hex characters, got {c.model_id!r}") from None
    if len(model_id) != 16:
        raise ContainerError(f"model id must be 32 hex characters, got {c.model_id!r}")
    if not (1 <= c.width <= MAX_SIDE and 1 <= c.height <= MAX_SIDE):
        raise ContainerError(f"image size {c.width}x{c.height} outside 1..{MAX_SIDE}")
    if len(c.strings) > MAX_STRING_LISTS or any(len(ss) > MAX_BATCH for ss in c.strings):
        raise ContainerError("too many latent strings for the container format")
    batch = len(c.strings[0]) if c.strings else 0
    if any(len(ss) != batch for ss in c.strings):
        raise ContainerError("every latent string list must hold one string per image")
    try:
        header = _HEADER.pack(
            MAGIC, FORMAT_VERSION, 0, model_id, c.width, c.height, *c.padding, len(c.side_info)
        )
    except struct.error as exc:
        raise ContainerError(f"container header cannot hold {c.padding=}: {exc}") from None
    parts = [header, bytes(c.side_info), _COUNTS.pack(len(c.strings), batch)]
    for ss in c.strings:
        for s in ss:
            parts += [_U32.pack(len(s)), bytes(s)]
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

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        return st.unpack(self.take(st.size, what))


def unpack(data: bytes) -> Container:
    """Parse container bytes; any damage, truncation or foreign file -> ``ContainerError``."""
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise ContainerError(
            "not a TextBoost container (.tbx): wrong magic bytes; encode it with "
            "`textboost compress`"
        )
    if len(data) >= 5 and data[4] != FORMAT_VERSION:
        raise ContainerError(
            f"container format version {data[4]} is not supported (this software reads "
            f"version {FORMAT_VERSION}); decode it with the textboost version that wrote it"
        )
    if len(data) < _HEADER.size + _COUNTS.size + _U32.size:
        raise ContainerError(f"truncated container: only {len(data)} bytes")
    (stored,) = _U32.unpack(data[-4:])
    if zlib.crc32(data[:-4]) != stored:
        raise ContainerError("container checksum mismatch: the file is damaged or truncated")
    r = _Reader(data, len(data) - 4)
    _, _, flags, model_id, width, height, *padding, side_len = r.unpack(_HEADER, "header")
    if flags != 0:
        raise ContainerError(f"unknown container flags {flags:#x}")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ContainerError(f"container declares image size {width}x{height} (max {MAX_SIDE})")
    side_info = r.take(side_len, "side info")
    n_lists, batch = r.unpack(_COUNTS, "string counts")
    if n_lists > MAX_STRING_LISTS or batch > MAX_BATCH:
        raise ContainerError(f"container declares {n_lists}x{batch} latent strings (too many)")
    strings = []
    for i in range(n_lists):
        row = []
        for _ in range(batch):
            (n,) = r.unpack(_U32, f"length of latent string {i}")
            row.append(r.take(n, f"latent string {i}"))
        strings.append(row)
    if r.pos != r.end:
        raise ContainerError(f"container has {r.end - r.pos} unexpected trailing bytes")
    return Container(model_id.hex(), width, height, tuple(padding), side_info, strings)


def describe(data: bytes) -> dict:
    """Size split of a container: bytes and bits per pixel of image vs side-info streams."""
    c = unpack(data)
    pixels = c.width * c.height
    overhead = len(data) - c.latent_bytes - len(c.side_info)
    return {
        "width": c.width,
        "height": c.height,
        "model_id": c.model_id,
        "total_bytes": len(data),
        "image_bytes": c.latent_bytes,
        "side_info_bytes": len(c.side_info),
        "overhead_bytes": overhead,
        "bpp_total": 8 * len(data) / pixels,
        "bpp_image": 8 * c.latent_bytes / pixels,
        "bpp_side_info": 8 * len(c.side_info) / pixels,
        "bpp_overhead": 8 * overhead / pixels,
    }
