"""Work inside one shard task: one reference in, one WebDataset sample out; then the tar.

Pure Python over ``textboost`` (never Ray). For each input image (paper 4.1, 5.1.4):
original bytes kept untouched (``jpg`` or ``png`` by their actual format), OCR words from
the annotations or the OCR engine, the average-character-area filter (``T_train`` for train,
``T_test`` for val), the side-info bytes, the guidance map rendered from the *decoded* side
info (exactly what the decoder will see), and a small ``meta.json``.

A corrupt image or a malformed annotation becomes a ``Reject`` with its reason; only I/O
errors other than "file not found" propagate, so the executor can retry the task.

``run_shard`` is the task body: it writes a deterministic tar (members sorted, fixed
metadata) under a temporary name, renames it, then writes the shard's stats JSON, its
commit marker (docs/architecture.md "Dataset layout").
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import io
import json
import shutil
import struct
import tarfile
import tempfile
import time
import uuid
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import fsspec
import numpy as np
from PIL import Image

from pipeline import faults
from pipeline.sources import (
    ANN_ERROR,
    ANN_ICDAR,
    ANN_NONE,
    ANN_OCR,
    ANN_SYNTH,
    ANN_TEXTOCR,
    SampleRef,
    fingerprint,
)
from textboost.canonical import canonical_json
from textboost.errors import AnnotationError, ImageError, TextBoostError
from textboost.words import Word

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SYNTH_JPEG_QUALITY = 90  # synthetic images made in the task: JPEG, as textboost.synth_sets.generate
FIELDS = ("guide.png", "meta.json", "ocr.json", "side.bin")  # plus "jpg" or "png"
TAR_MTIME = 946684800  # 2000-01-01T00:00:00Z for every tar member


@dataclass(frozen=True)
class SampleSpec:
    """What a shard task needs besides the references (all from the config)."""

    threshold: float  # data.filter.t_train (train) or t_test (val)
    side_info_format: str = "compact"
    synth: dict = field(default_factory=dict)  # synth_image keywords (from data.synth)
    synth_seed: int = 0


@dataclass(frozen=True)
class Reject:
    """An input that could not become a sample, and why (one line of ``rejected.jsonl``)."""

    key: str
    url: str
    reason: str

    def to_json(self) -> dict:
        return {"key": self.key, "url": self.url, "reason": self.reason}


def dumps(obj: object) -> bytes:
    """The JSON of shard members and markers: canonical, UTF-8 (same object, same bytes)."""
    return canonical_json(obj, ensure_ascii=False)


def read_range(url: str, offset: int = -1, size: int = -1) -> bytes:
    """Whole file, or ``size`` bytes at ``offset`` (an image inside a tar)."""
    fs, path = fsspec.core.url_to_fs(url)
    if offset < 0:
        return fs.cat_file(path)
    data = fs.cat_file(path, start=offset, end=offset + size)
    if len(data) != size:
        raise ImageError(f"{url}: tar member at byte {offset} is truncated")
    return data


def image_format(data: bytes) -> str:
    """``jpg`` or ``png`` from the magic bytes (the file extension is not trusted)."""
    if data.startswith(JPEG_MAGIC):
        return "jpg"
    if data.startswith(PNG_MAGIC):
        return "png"
    raise ImageError(
        f"unsupported image format (first bytes {data[:8]!r}); shards keep original JPEG "
        "or PNG bytes only, convert the file to one of them"
    )


def decode_image(data: bytes, full: bool) -> tuple[Image.Image, tuple[int, int]]:
    """Decode enough to catch corrupt or truncated files; ``full`` for pixel access.

    Returns the image (reduced by DCT scaling unless ``full``) and its stored size (W, H);
    EXIF orientation is not applied: annotations refer to the stored pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            size = im.size
            if not full and im.format == "JPEG":
                # DCT scaling still walks the whole entropy-coded stream (catches
                # truncation) at a fraction of the cost of a full decode.
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"cannot decode image: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: {exc}") from None
    return im, size


def textocr_words(words_json: str) -> list[Word]:
    """The words a TextOCR reference carries (parsed and checked by ``read_textocr``)."""
    return [Word.from_json(w) for w in json.loads(words_json)]


def ocr_words(image: Image.Image) -> list[Word]:
    """Words found by RapidOCR (the shared one-thread engine: reproducible; RGB -> BGR)."""
    from textboost.ocr import ocr_image_words

    return ocr_image_words(image)


def _synthetic(ref: SampleRef, spec: SampleSpec) -> tuple[bytes, list[Word]]:
    from textboost.synth import synth_image

    image, words = synth_image(ref.index, spec.synth_seed, **spec.synth)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=SYNTH_JPEG_QUALITY)
    return buf.getvalue(), list(words)


def annotation_words(ref: SampleRef, subject: str = "this image") -> list[Word] | None:
    """The ground truth of ``ref`` from its source's annotation (TextOCR, ICDAR 2015); None
    when the source has none (words by OCR at build time, or no words). A bad annotation
    raises ``AnnotationError`` (``subject`` names the image), a vanished ICDAR ground-truth
    file ``FileNotFoundError``."""
    if ref.ann_kind == ANN_TEXTOCR:
        return textocr_words(ref.ann)
    if ref.ann_kind == ANN_ERROR:
        raise AnnotationError(ref.ann)
    if ref.ann_kind == ANN_ICDAR:
        if not ref.ann:
            raise AnnotationError(f"no ground-truth file gt_{ref.id}.txt for {subject}")
        from textboost.ocr import read_icdar2015_gt

        return read_icdar2015_gt(read_range(ref.ann), name=ref.ann)
    return None


def _words(ref: SampleRef, image: Image.Image) -> list[Word]:
    try:
        words = annotation_words(ref)
    except FileNotFoundError:
        raise AnnotationError(f"ground-truth file {ref.ann} is missing") from None
    if words is not None:
        return words
    return ocr_words(image) if ref.ann_kind == ANN_OCR else []


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


def load_input(ref: SampleRef, spec: SampleSpec) -> tuple[bytes, list[Word] | None]:
    """The image bytes (and, for synthetic samples, their words). I/O errors propagate."""
    if ref.ann_kind == ANN_SYNTH or (ref.source == "synthetic" and not ref.image):
        data, words = _synthetic(ref, spec)
        return data, (words if ref.ann_kind == ANN_SYNTH else None)
    return read_range(ref.image, ref.offset, ref.size), None


def process_sample(ref: SampleRef, spec: SampleSpec) -> dict[str, bytes] | Reject:
    """One WebDataset sample (``__key__`` plus fields) or a ``Reject`` with its reason."""
    try:
        data, words = load_input(ref, spec)
    except FileNotFoundError:
        return Reject(ref.key, ref.image, "image file not found")
    except TextBoostError as exc:
        return Reject(ref.key, ref.image, f"{type(exc).__name__}: {exc}")
    try:
        fmt = image_format(data)
        image, (width, height) = decode_image(data, full=ref.ann_kind == ANN_OCR)
        if words is None:
            words = _words(ref, image)
        return build_fields(ref, spec, data, fmt, (width, height), words)
    except TextBoostError as exc:
        return Reject(ref.key, ref.image or ref.key, f"{type(exc).__name__}: {exc}")


def build_fields(
    ref: SampleRef,
    spec: SampleSpec,
    data: bytes,
    fmt: str,
    size: tuple[int, int],
    words: list[Word],
) -> dict[str, bytes]:
    """Filter -> side info -> decoded side info -> guidance map; plus ocr.json and meta.json."""
    from textboost.filtering import filter_words
    from textboost.guidance import render_guidance
    from textboost.side_info import decode_side_info, encode_side_info

    width, height = size
    kept, dropped = filter_words(words, spec.threshold)
    side_info = encode_side_info(kept, (width, height), fmt=spec.side_info_format)
    guidance_map = render_guidance(decode_side_info(side_info), height, width)  # HxW uint8
    reasons = Counter(_reason(d) for d in dropped)
    meta = {
        "source": ref.source,
        "id": ref.id,
        "width": width,
        "height": height,
        "format": fmt,
        "words": {"input": len(words), "kept": len(kept), "dropped": len(dropped)},
        "dropped": dict(sorted(reasons.items())),
        "words_from": {ANN_NONE: "none", ANN_OCR: "ocr"}.get(ref.ann_kind, "annotations"),
        "threshold": spec.threshold,
        "side_info_bytes": len(side_info),
    }
    ocr = {"width": width, "height": height, "words": [w.to_json() for w in kept]}
    return {
        "__key__": ref.key.encode(),
        fmt: data,
        "guide.png": encode_png(guidance_map),
        "meta.json": dumps(meta),
        "ocr.json": dumps(ocr),
        "side.bin": side_info,
    }


def _reason(dropped: tuple[Word, str]) -> str:
    """The category of a filter reason (``meta.json`` counts categories, not numbers)."""
    reason = str(dropped[1])
    if reason.startswith("avg char area"):
        return "avg char area > T"
    return reason.split(":", 1)[0]


# --------------------------------------------------------------------------- one shard


@dataclass(frozen=True)
class ShardTask:
    """Everything one shard task needs; small enough to ship to a Ray worker."""

    out: str  # shards.out URL
    split: str
    index: int
    refs: tuple[SampleRef, ...]
    spec: SampleSpec
    config_hash: str
    code_version: str
    commit: bool = True  # False: return the tar bytes (process-local output such as memory://)
    fault_marker: str = ""  # pipeline.faults.crash_once (tests only)

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}"


def write_tar(samples: list[dict[str, bytes]], fileobj: io.IOBase) -> dict[str, int]:
    """A deterministic tar: samples in order, fields sorted, fixed member metadata."""
    field_bytes: dict[str, int] = {}
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            key = sample["__key__"].decode()
            for ext in sorted(k for k in sample if k != "__key__"):
                data = sample[ext]
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
                field = "image" if ext in ("jpg", "png") else ext
                field_bytes[field] = field_bytes.get(field, 0) + len(data)
    return dict(sorted(field_bytes.items()))


def write_atomic(
    fs: fsspec.AbstractFileSystem,
    path: str,
    src: io.IOBase | bytes,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write under a temporary name, then rename: readers never see a partial file.

    ``before_rename`` runs between the two (the fault-injection hook of the shard tests).
    """
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with fs.open(tmp, "wb") as f:
        if isinstance(src, bytes):
            f.write(src)
        else:
            shutil.copyfileobj(src, f, 1 << 20)
    if before_rename is not None:
        before_rename()
    fs.mv(tmp, path)


# glibc serves allocations above a *dynamic* threshold (128 KiB at start) with fresh mmaps.
# Each sample allocates a few MiB of such buffers (decoded image, guidance map, PNG rows);
# whether the threshold has grown past them depends on the process's history, so a task
# paid ~700 page faults per sample or almost none, and ran 10-25 % slower or not. A fixed
# threshold keeps the buffers in the heap (and pins the threshold: no more drift).
MMAP_THRESHOLD = 32 << 20  # glibc's largest dynamic value on 64-bit
TRIM_THRESHOLD = 128 << 20  # free heap kept before returning memory to the OS


@functools.cache
def steady_heap() -> bool:
    """Fix glibc's mmap/trim thresholds in this process, once; False where there is no glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no glibc: macOS, Windows
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, TRIM_THRESHOLD)
    )


def run_shard(task: ShardTask) -> dict:
    """Task body: process the shard's samples, write and commit the tar, return stats."""
    steady_heap()
    start, cpu = time.perf_counter(), time.process_time()
    samples, rejects = [], []
    for ref in task.refs:
        result = process_sample(ref, task.spec)
        (rejects if isinstance(result, Reject) else samples).append(result)
    with tempfile.SpooledTemporaryFile(max_size=256 << 20) as spool:
        field_bytes = write_tar(samples, spool)
        size = spool.tell()
        spool.seek(0)
        digest = hashlib.sha256()
        for block in iter(lambda: spool.read(1 << 20), b""):
            digest.update(block)
        stats = {
            "name": f"{task.name}.tar",
            "split": task.split,
            "shard": task.index,
            "count": len(samples),
            "inputs": len(task.refs),
            "bytes": size,
            "sha256": digest.hexdigest(),
            "field_bytes": field_bytes,
            "rejected": [r.to_json() for r in sorted(rejects, key=lambda r: r.key)],
            "config_hash": task.config_hash,
            "code_version": task.code_version,
            "inputs_sha256": fingerprint(task.refs),
        }
        spool.seek(0)
        payload = None
        if task.commit:
            commit_shard(task.out, task.name, spool, stats, task.fault_marker)
        else:
            payload = spool.read()
    seconds = {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}
    return {"stats": stats, "payload": payload, "seconds": seconds}


def commit_shard(
    out: str, name: str, tar_src: io.IOBase | bytes, stats: dict, fault_marker: str = ""
) -> None:
    """Write the tar (temp name + rename), then the stats JSON: the commit marker.

    A marker that says something else is removed first, so a tar is never paired with
    another build's marker; an identical one (a retried or duplicate task) is left alone.
    """
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    marker, new_marker = f"{root}/{name}.json", dumps(stats) + b"\n"
    try:
        old_marker = fs.cat_file(marker)
    except FileNotFoundError:
        old_marker = None
    if old_marker not in (None, new_marker):
        fs.rm(marker)
    # the fault hook dies between the temp write and the rename
    write_atomic(fs, f"{root}/{name}.tar", tar_src, lambda: faults.crash_once(fault_marker))
    if old_marker != new_marker:
        write_atomic(fs, marker, new_marker)
