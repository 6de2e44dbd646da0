"""Unsigned LEB128 varints, shared by the container (``textboost.codec.container``) and the side
information (``textboost.text.side_info``) formats: 7 bits per byte, low bits first, the high bit
set on every byte but the last."""

from __future__ import annotations


class VarintError(ValueError):
    """A varint that cannot be read; ``truncated``: the bytes ran out (else: too long)."""

    def __init__(self, truncated: bool) -> None:
        super().__init__("truncated varint" if truncated else "over-long varint")
        self.truncated = truncated


def put_uvarint(out: bytearray, v: int) -> None:
    """Append the varint of ``v >= 0`` to ``out``."""
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def uvarint(v: int) -> bytes:
    """The varint of ``v >= 0``."""
    out = bytearray()
    put_uvarint(out, v)
    return bytes(out)


def read_uvarint(data: bytes, pos: int, end: int, max_bytes: int) -> tuple[int, int]:
    """``(value, position after it)`` of the varint at ``data[pos:end]`` of at most
    ``max_bytes`` bytes; raises ``VarintError`` when it is truncated or longer."""
    value = 0
    for i in range(max_bytes):
        if pos >= end:
            raise VarintError(truncated=True)
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise VarintError(truncated=False)
