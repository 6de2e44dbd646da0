"""The .tbx container: round trips, size split and bounded parsing of damaged files."""

from __future__ import annotations

import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textboost import container
from textboost.container import Container, describe, pack, unpack
from textboost.errors import ContainerError

MODEL_ID = "0123456789abcdef0123456789abcdef"


def _sample(side: bytes = b"side-info", strings=None) -> Container:
    strings = strings if strings is not None else [[b"\x01\x02\x03" * 10], [b"zz"]]
    return Container(MODEL_ID, 100, 60, (14, 14, 2, 2), side, strings)


def _recrc(body: bytes) -> bytes:
    """Give a hand-made container body a valid checksum (to reach the inner checks)."""
    return body + struct.pack("<I", zlib.crc32(body))


def test_round_trip_and_layout():
    c = _sample()
    data = pack(c)
    assert data[:4] == b"TBX\x1a" and data[4] == container.FORMAT_VERSION
    assert unpack(data) == c
    assert pack(unpack(data)) == data  # canonical


@settings(max_examples=60, deadline=None)
@given(
    side=st.binary(max_size=300),
    strings=st.lists(st.lists(st.binary(max_size=200), min_size=1, max_size=1), max_size=12),
    w=st.integers(1, container.MAX_SIDE),
    h=st.integers(1, container.MAX_SIDE),
)
def test_round_trip_property(side, strings, w, h):
    c = Container(MODEL_ID, w, h, (0, 63, 1, 0), side, strings)
    assert unpack(pack(c)) == c


def test_describe_splits_bits():
    data = pack(_sample())
    d = describe(data)
    assert d["image_bytes"] == 32 and d["side_info_bytes"] == 9
    assert (
        d["image_bytes"] + d["side_info_bytes"] + d["overhead_bytes"]
        == len(data)
        == d["total_bytes"]
    )
    assert d["overhead_bytes"] == 4 + 1 + 1 + 16 + 8 + 8 + 4 + 4 + 2 * 4 + 4
    px = 100 * 60
    assert d["bpp_total"] == pytest.approx(8 * len(data) / px)
    assert d["bpp_image"] + d["bpp_side_info"] + d["bpp_overhead"] == pytest.approx(d["bpp_total"])


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "wrong magic"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "wrong magic"),
        (b"TBX\x1a\x07" + b"\0" * 100, "format version 7"),
        (b"TBX\x1a\x01", "truncated"),
    ],
)
def test_foreign_or_short_files(data, match):
    with pytest.raises(ContainerError, match=match):
        unpack(data)


def test_checksum_trailing_and_truncation():
    data = pack(_sample())
    with pytest.raises(ContainerError, match="checksum"):
        unpack(data[:-1])
    with pytest.raises(ContainerError, match="checksum"):
        unpack(data + b"\0")
    flipped = bytearray(data)
    flipped[40] ^= 0x10
    with pytest.raises(ContainerError, match="checksum"):
        unpack(bytes(flipped))
    body = data[:-4]
    with pytest.raises(ContainerError, match="trailing"):
        unpack(_recrc(body + b"extra"))


def _header(side_len: int, w: int = 100, h: int = 60, flags: int = 0) -> bytes:
    return struct.pack("<4sBB16sII4HI", b"TBX\x1a", 1, flags, bytes(16), w, h, 0, 0, 0, 0, side_len)


@pytest.mark.parametrize(
    "body,match",
    [
        (_header(2**32 - 1) + b"\0" * 8, "side info needs 4294967295 bytes"),
        (_header(0) + struct.pack("<HH", 65535, 1), "too many"),
        (_header(0) + struct.pack("<HH", 2, 1) + struct.pack("<I", 2**31), "latent string 0"),
        (_header(0) + struct.pack("<HH", 1, 1), "length of latent string 0"),
        (_header(0, w=0) + struct.pack("<HH", 0, 0), "image size 0x60"),
        (_header(0, w=2**31) + struct.pack("<HH", 0, 0), "image size"),
        (_header(0, flags=3) + struct.pack("<HH", 0, 0), "flags"),
    ],
)
def test_hostile_lengths_with_valid_checksum(body, match):
    with pytest.raises(ContainerError, match=match):
        unpack(_recrc(body))


def test_pack_rejects_unrepresentable_values():
    with pytest.raises(ContainerError, match="model id"):
        pack(Container("xyz", 1, 1, (0, 0, 0, 0), b"", []))
    with pytest.raises(ContainerError, match="image size"):
        pack(Container(MODEL_ID, 0, 1, (0, 0, 0, 0), b"", []))
    with pytest.raises(ContainerError, match="one string per image"):
        pack(Container(MODEL_ID, 1, 1, (0, 0, 0, 0), b"", [[b"a"], [b"b", b"c"]]))


def _mutate(data: bytes, rng: random.Random, fix_crc: bool) -> bytes:
    buf = bytearray(data)
    op = rng.choice(["flip", "byte", "truncate", "extend", "splice"])
    if op == "flip":
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    elif op == "byte":
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif op == "truncate":
        del buf[rng.randrange(len(buf)) :]
    elif op == "extend":
        buf += rng.randbytes(rng.randrange(1, 64))
    else:
        i = rng.randrange(len(buf))
        buf[i:i] = rng.randbytes(rng.randrange(1, 16))
    if fix_crc and len(buf) > 4:
        return _recrc(bytes(buf[:-4]))
    return bytes(buf)


@pytest.mark.parametrize("fix_crc", [False, True], ids=["raw", "crc-fixed"])
def test_fuzz_only_container_errors(fix_crc):
    data = pack(_sample())
    rng = random.Random(1234 + fix_crc)
    outcomes = {"error": 0, "ok": 0}
    for _ in range(1000):
        bad = _mutate(data, rng, fix_crc)
        try:
            unpack(bad)
            outcomes["ok"] += 1
        except ContainerError:
            outcomes["error"] += 1
    assert outcomes["error"] > 500
    if not fix_crc:
        assert outcomes["ok"] == 0  # crc32 catches every random mutation of this size
