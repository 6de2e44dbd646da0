"""Random damage to ``.tbx`` containers, shared by the container and codec fuzz tests."""

from __future__ import annotations

import bisect
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


# --------------------------------------------------------------------------- rANS port
#
# The C++ decoder's reads cannot be observed from Python; a faithful port can count them.
# ``record(model)`` runs the port next to compressai on every string a decode entropy-decodes
# (the guarded buffer ``textboost.codec.image_codec`` hands over) and logs (words read, words in the
# buffer, symbols, mismatching values): the guard is enough when reads <= buffer words.

RANS64_L = 1 << 31
M64 = (1 << 64) - 1


def _i32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def rans_decode(data, indexes, cdfs, cdf_lengths, offsets, precision=16, bypass_bits=4):
    """compressai's ``RansDecoder.decode_with_indexes`` (rans_interface.cpp, ryg_rans' Rans64)
    in Python, counting the 32-bit words it reads: ``(values, words read, exact)``; ``exact``
    marks the values C defines (more than 7 bypass nibbles shift past an int32 there).
    Reads past the buffer are counted (as zero words)."""
    n = len(data) // 4
    words = struct.unpack(f"<{n}I", data[: 4 * n]) + (0,) * 2
    x, pos = words[0] | (words[1] << 32), 2
    mask, nib = (1 << precision) - 1, (1 << bypass_bits) - 1
    max_bypass = nib
    out, exact = [], []
    for idx in indexes:
        cdf, length, offset = cdfs[idx], cdf_lengths[idx], offsets[idx]
        max_value = length - 2
        s = bisect.bisect_right(cdf, x & mask, 0, length) - 1
        start, freq = cdf[s], (cdf[s + 1] - cdf[s]) & 0xFFFFFFFF
        x = (freq * (x >> precision) + (x & mask) - start) & M64
        if x < RANS64_L:  # Rans64DecAdvance: at most one word
            x = ((x << 32) | (words[pos] if pos < n else 0)) & M64
            pos += 1
        value, ok = s, True
        if value == max_value:  # bypass mode: n_bypass nibbles, then that many more
            n_bypass, run, done, raw = 0, True, 0, 0
            while run or done < n_bypass:
                val, x = x & nib, x >> bypass_bits  # Rans64DecGetBits
                if x < RANS64_L:
                    x = ((x << 32) | (words[pos] if pos < n else 0)) & M64
                    pos += 1
                if run:
                    n_bypass += val
                    run = val == max_bypass
                else:
                    if done < 8:
                        raw |= val << (done * bypass_bits)
                    done += 1
            ok = n_bypass <= 7  # beyond: C shifts past int32 (undefined), not compared
            raw = _i32(raw)
            value = raw >> 1
            value = -value - 1 if raw & 1 else value + max_value
        out.append(_i32(value + offset))
        exact.append(ok)
    return out, pos, exact


class Recorder:
    """Stands in for an EntropyModel's ``entropy_coder``: decodes with compressai and with the
    Python port, records (words read, words in the buffer), checks the values agree."""

    def __init__(self, inner, log):
        self.inner, self.log = inner, log

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def decode_with_indexes(self, s, indexes, cdfs, lengths, offsets):
        real = self.inner.decode_with_indexes(s, indexes, cdfs, lengths, offsets)
        mine, reads, exact = rans_decode(bytes(s), indexes, cdfs, lengths, offsets)
        bad = [i for i, (a, b, e) in enumerate(zip(real, mine, exact)) if e and a != b]
        self.log.append((reads, len(s) // 4, len(indexes), bad[:3]))
        return real


def record(model) -> list:
    """Route every entropy model of ``model`` through a ``Recorder``; returns its log."""
    from compressai.entropy_models.entropy_models import EntropyModel

    log = []
    for m in model.modules():
        if isinstance(m, EntropyModel):
            m.entropy_coder = Recorder(m.entropy_coder, log)
    return log


# --------------------------------------------------------------------------- hostile corpus
#
# ``python tests/container_fuzz.py [--quick]`` builds hostile containers *with valid
# checksums* (empty, short, random, truncated, flipped, extended and oversized latent strings;
# damaged colour blocks; container-level mutations) for tiny models of both backbones and the
# colour fusion block (format version 2) at several image sizes, and decodes each in this
# process. It prints one line before each decode, so the test that runs it in a subprocess
# can name the container that killed it, and a JSON summary at the end.

FUZZ_SIZES = ((64, 64), (96, 64), (130, 70))  # (width, height); plus one large size below
FUZZ_LARGE = (1024, 768)  # the size of the crash the issue reported
# per model and small size; ELIC decodes cost the most (each one also refreshes the CDF
# tables: its masked context convolutions bump the weights' version counters)
VARIANTS_PER_BASE = {"hyperprior": 80, "colour": 80, "elic": 20}
LARGE_VARIANTS = {"hyperprior": 6, "colour": 6, "elic": 3}


def fuzz_models() -> dict:
    """Tiny models, built deterministically: hyperprior, hyperprior + colour block, ELIC."""
    import torch

    from textboost.config import ModelConfig
    from textboost.model import build_model

    cfgs = {
        "hyperprior": ModelConfig(backbone="hyperprior", N=8, M=8),
        "colour": ModelConfig(backbone="hyperprior", N=8, M=8, fusion="colour"),
        "elic": ModelConfig(backbone="elic", N=8, M=136),  # ELIC needs M > 128
    }
    models = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        models[name] = build_model(cfg).eval()
    return models


def _scene(width: int, height: int, seed: int):
    import numpy as np
    from PIL import Image

    from textboost.text.words import Word

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.3 * np.sin(xx / 7 + seed)], -1)
    noise = rng.normal(0, 0.05, base.shape)
    image = Image.fromarray((np.clip(base + noise, 0, 1) * 255).astype(np.uint8), "RGB")
    words = []
    for i in range(2):
        x0, y0 = 2 + 10 * i, 2 + (height // 3) * i
        x1, y1 = min(width - 1, x0 + 30), min(height - 1, y0 + 10)
        words.append(Word(((x0, y0), (x1, y0), (x1, y1), (x0, y1)), f"W{i}", True))
    return image, words


def _hostile_string(
    kind: str, valid: bytes, other: bytes, rng: random.Random, ceiling: int = 1 << 16
) -> bytes:
    if kind == "empty":
        return b""
    if kind == "short":
        return rng.randbytes(rng.randrange(1, 8))
    if kind == "word8":
        return rng.randbytes(8)
    if kind == "zeros":
        return bytes(4 * rng.randrange(2, 64))
    if kind == "ones":
        return b"\xff" * (4 * rng.randrange(2, 512))
    if kind == "random":
        return rng.randbytes(4 * rng.randrange(2, 600))
    if kind == "random-odd":
        return rng.randbytes(rng.randrange(9, 2000))
    if kind == "truncated":
        return valid[: rng.randrange(len(valid))]
    if kind == "truncated-words":
        return valid[: 4 * rng.randrange(2, max(3, len(valid) // 4))]
    if kind == "flipped":
        buf = bytearray(valid)
        for _ in range(rng.randrange(1, 8)):
            buf[rng.randrange(len(buf))] ^= rng.randrange(1, 256)
        return bytes(buf)
    if kind == "extended":
        return valid + rng.randbytes(4 * rng.randrange(1, 64))
    if kind == "swapped":
        return other
    if kind == "huge":  # above the most a valid string for the shape can hold
        return rng.randbytes(ceiling + 4 * rng.randrange(1, 64))
    if kind == "ones-ceiling":  # the longest accepted string, all bypass nibbles
        return b"\xff" * (ceiling // 4 * 4)
    if kind == "random-ceiling":
        return rng.randbytes(ceiling // 4 * 4)
    raise ValueError(kind)


STRING_KINDS = (
    "empty", "short", "word8", "zeros", "ones", "random", "random-odd", "truncated",
    "truncated-words", "flipped", "extended", "swapped", "huge", "ones-ceiling",
    "random-ceiling",
)  # fmt: skip


def hostile_variants(valid: bytes, rng: random.Random, n: int, model, large: bool = False):
    """``n`` (label, container bytes) pairs derived from the ``valid`` container of
    ``model``; every one has a valid checksum."""
    from textboost.codec import container
    from textboost.codec import image_codec as codec

    c = container.unpack(valid)
    lists = len(c.strings)
    padded = (c.height + c.padding[2] + c.padding[3], c.width + c.padding[0] + c.padding[1])
    symbols = codec.string_symbols(model, *padded)
    ceiling = codec.RANS_MAX_BYTES_PER_SYMBOL * symbols + 2 * codec.RANS_MIN_BYTES
    out = []
    if large:  # the crash of the issue: empty and short strings for a big image
        kinds = ["empty-all", "word8-all", "ones-ceiling", "ones", "random", "truncated-words"]
    else:
        kinds = ["empty-all", "word8-all"] + [rng.choice(STRING_KINDS) for _ in range(n - 2)]
        kinds[-4:] = ["container", "container", "colours", "colours"]
    for kind in kinds[:n]:
        strings = [list(ss) for ss in c.strings]
        colours = c.colours
        label = kind
        if kind.endswith("-all"):
            base = kind[: -len("-all")]
            strings = [[_hostile_string(base, ss[0], ss[0], rng)] for ss in c.strings]
        elif kind == "container":
            out.append((kind, mutate(valid, rng, fix_crc=True)))
            continue
        elif kind == "colours":
            if not colours:
                colours = rng.randbytes(rng.randrange(1, 20))
            elif rng.random() < 0.5:
                colours = rng.randbytes(len(colours))
            else:
                colours = colours[: rng.randrange(1, len(colours) + 1)] + rng.randbytes(3)
        else:
            i = rng.randrange(lists)
            other = c.strings[(i + 1) % lists][0]
            strings[i] = [_hostile_string(kind, c.strings[i][0], other, rng, ceiling)]
            label = f"{kind}@{i}"
        bad = container.Container(
            c.model_id, c.width, c.height, c.padding, c.side_info, strings, colours
        )
        out.append((label, container.pack(bad)))
    return out


def hostile_corpus(models: dict, seed: int = 0, quick: bool = False):
    """(model name, label, container bytes) triples: the whole corpus, deterministic."""
    from textboost.codec.image_codec import encode_image

    rng = random.Random(seed)
    per_base = {name: 8 for name in models} if quick else VARIANTS_PER_BASE
    for name, model in models.items():
        for j, (w, h) in enumerate(FUZZ_SIZES + (FUZZ_LARGE,)):
            large = (w, h) == FUZZ_LARGE
            image, words = _scene(w, h, j)
            valid = encode_image(model, image, words)
            n = LARGE_VARIANTS[name] if large else per_base[name]
            for label, data in hostile_variants(valid, rng, n, model, large):
                yield name, f"{name} {w}x{h} {label}", data


def run_corpus(quick: bool = False, seed: int = 0) -> dict:
    """Decode every container of the corpus; prints progress; returns the outcome counts."""
    import json
    import sys
    import time

    import torch

    from textboost.codec.image_codec import decode_container
    from textboost.errors import ContainerError

    torch.set_num_threads(1)
    models = fuzz_models()
    counts = {"containers": 0, "refused": 0, "decoded": 0, "seconds": 0.0}
    start = time.perf_counter()
    for i, (name, label, data) in enumerate(hostile_corpus(models, seed, quick)):
        print(f"decoding {i}: {label}", end=" ", flush=True)
        t0 = time.perf_counter()
        try:
            image = decode_container(models[name], data)
        except ContainerError:
            counts["refused"] += 1
            outcome = "refused"
        else:
            assert image.mode == "RGB", label
            counts["decoded"] += 1
            outcome = "decoded"
        counts["containers"] += 1
        print(f"{outcome} {time.perf_counter() - t0:.3f}s", flush=True)
    counts["seconds"] = round(time.perf_counter() - start, 2)
    print("summary " + json.dumps(counts), flush=True)
    sys.stdout.flush()
    return counts


if __name__ == "__main__":
    import sys

    seeds = [int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--seed=")]
    run_corpus(quick="--quick" in sys.argv, seed=seeds[0] if seeds else 0)
