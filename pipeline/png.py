"""A deterministic 8-bit grayscale PNG writer for guidance maps (bytes depend on pixels only)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def encode_png(array: np.ndarray) -> bytes:
    """Deterministic 8-bit grayscale PNG of a uint8 HxW guidance map.

    Filter "None" on every row and zlib's run-length strategy: guidance maps are almost all
    zeros, which this codes ~2.5x faster than Pillow's adaptive filters at level 6 and a
    little smaller. No metadata chunks; the bytes depend only on the pixels (and zlib).
    """
    height, width = array.shape
    rows = np.zeros((height, width + 1), np.uint8)  # filter byte 0, then the row
    rows[:, 1:] = array
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    idat = deflate.compress(rows.tobytes()) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    return (
        PNG_MAGIC
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
