"""The .tbx container: round trips, size split and bounded parsing of damaged files."""

from __future__ import annotations

import random

import pytest
from container_fuzz import mutate, recrc
from hypothesis import given, settings
from hypothesis import strategies as st

from textboost.codec import container
from textboost.codec.container import Container, describe, pack, unpack
from textboost.errors import ContainerError
from textboost.varint import uvarint

MODEL_ID = "0123456789abcdef"


def _sample(side: bytes = b"side-info", strings=None) -> Container:
    strings = strings if strings is not None else [[b"\x01\x02\x03" * 10], [b"zz"]]
    return Container(MODEL_ID, 100, 60, (14, 14, 2, 2), side, strings)


def test_round_trip_and_layout():
    c = _sample()
    data = pack(c)
    assert data[:3] == b"TBX" and data[3] == container.FORMAT_VERSION
    assert unpack(data) == c
    assert pack(unpack(data)) == data  # canonical
    big = _sample(side=b"s" * 300, strings=[[bytes(70_000)], [b""]])  # 3-byte varint lengths
    assert unpack(pack(big)) == big


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
    # magic, version, id, width, height, padding, side len, counts, 2 string lengths, crc
    assert d["overhead_bytes"] == 3 + 1 + 8 + 1 + 1 + 4 + 1 + 2 + 2 * 1 + 4
    px = 100 * 60
    assert d["bpp_total"] == pytest.approx(8 * len(data) / px)
    assert d["bpp_image"] + d["bpp_side_info"] + d["bpp_overhead"] == pytest.approx(d["bpp_total"])


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "wrong magic"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "wrong magic"),
        (b"TBX\x07" + b"\0" * 100, "format version 7"),
        (b"TBX\x01", "truncated"),
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
        unpack(recrc(body + b"extra"))


def _varint(v: int) -> bytes:
    return uvarint(v)


def _header(side_len: int, w: int = 100, h: int = 60) -> bytes:
    return b"TBX\x01" + bytes(8) + _varint(w) + _varint(h) + bytes(4) + _varint(side_len)


@pytest.mark.parametrize(
    "body,match",
    [
        (_header(2**32 - 1) + b"\0" * 8, "side info needs 4294967295 bytes"),
        (_header(0) + bytes([255, 1]), "too many"),
        (_header(0) + bytes([2, 1]) + _varint(2**31), "latent string 0 needs"),
        (_header(0) + bytes([1, 1]) + b"\xff" * 6, "not a valid varint"),
        (_header(0) + bytes([1, 1]), "length of latent string 0"),
        (_header(0, w=0) + bytes([0, 0]), "image size 0x60"),
        (_header(0, w=2**31) + bytes([0, 0]), "image size"),
        (b"TBX\x01" + bytes(8) + b"\xff" * 12, "width is not a valid varint"),
    ],
)
def test_hostile_lengths_with_valid_checksum(body, match):
    with pytest.raises(ContainerError, match=match):
        unpack(recrc(body))


def test_pack_rejects_unrepresentable_values():
    with pytest.raises(ContainerError, match="model id"):
        pack(Container("xyz", 1, 1, (0, 0, 0, 0), b"", []))
    with pytest.raises(ContainerError, match="image size"):
        pack(Container(MODEL_ID, 0, 1, (0, 0, 0, 0), b"", []))
    with pytest.raises(ContainerError, match="padding"):
        pack(Container(MODEL_ID, 1, 1, (0, 300, 0, 0), b"", []))
    with pytest.raises(ContainerError, match="one string per image"):
        pack(Container(MODEL_ID, 1, 1, (0, 0, 0, 0), b"", [[b"a"], [b"b", b"c"]]))


@pytest.mark.parametrize("fix_crc", [False, True], ids=["raw", "crc-fixed"])
def test_fuzz_only_container_errors(fix_crc):
    data = pack(_sample())
    rng = random.Random(1234 + fix_crc)
    outcomes = {"error": 0, "ok": 0}
    for _ in range(1000):
        bad = mutate(data, rng, fix_crc)
        try:
            unpack(bad)
            outcomes["ok"] += 1
        except ContainerError:
            outcomes["error"] += 1
    assert outcomes["error"] > 500
    if not fix_crc:
        assert outcomes["ok"] == 0  # crc32 catches every random mutation of this size
