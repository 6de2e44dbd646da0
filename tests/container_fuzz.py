"""Random damage to ``.tbx`` containers, shared by the container and codec fuzz tests."""

from __future__ import annotations

import random
import struct
import zlib


def recrc(body: bytes) -> bytes:
    """Give a container body a valid checksum (so damage reaches the inner checks)."""
    return body + struct.pack("<I", zlib.crc32(body))


def mutate(data: bytes, rng: random.Random, fix_crc: bool) -> bytes:
    """One random flip, byte change, truncation, extension or splice; ``fix_crc`` damages
    the body only and recomputes the trailing crc32."""
    buf = bytearray(data[:-4] if fix_crc else data)
    op = rng.choice(["flip", "byte", "truncate", "extend", "splice"])
    if op == "flip":
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif op == "byte":
        buf[rng.randrange(len(buf))] ^= rng.randrange(1, 256)  # always a change
    elif op == "truncate":
        del buf[rng.randrange(len(buf)) :]
    elif op == "extend":
        buf += rng.randbytes(rng.randrange(1, 64))
    else:
        i = rng.randrange(len(buf))
        buf[i:i] = rng.randbytes(rng.randrange(1, 16))
    return recrc(bytes(buf)) if fix_crc else bytes(buf)
