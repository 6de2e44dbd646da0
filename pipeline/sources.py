"""Data sources over fsspec URLs: a sorted, deterministic list of light sample references.

A source only *lists* its inputs (paper 5.1.1: TextOCR, ICDAR 2015, ImageNet for stage 1,
any image folder, and the synthetic scene-text set). Listing is cheap: file names, sizes and,
for TextOCR, the raw per-image annotation records. The bytes are loaded later, per sample,
inside the shard task (``pipeline.samples``), so a plan over 1.28M ImageNet images is made
in the driver without reading a single image.

ImageNet class tars are listed from a sidecar index ``<tar>.idx.json`` when there is one
(``python -m jobs.tar_index``: member name, data offset and size; one small read per tar),
otherwise by walking the tar headers with small ranged reads (about 1 KiB per member, never
the member data: s3fs's default 50 MB read-ahead would download the whole tar).

Every reference carries a ``key`` ``<source>_<id>`` (no dots: WebDataset splits keys at the
first dot) and a fingerprint line; the sha256 of all lines is the source fingerprint stored
in the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fsspec

from textboost.config import SourceConfig, SynthConfig
from textboost.errors import AnnotationError, ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
VAL_SYNTH_OFFSET = 1_000_000  # synthetic val indices start here: disjoint from train
MAX_KEY_LEN = 90  # tar member names stay within the ustar limit with room for extensions
TAR_INDEX_SUFFIX = ".idx.json"  # sidecar tar index: <tar>.idx.json
TAR_INDEX_FORMAT = "textboost-tar-index/1"
# Header walk: each miss fetches the bytes asked for plus this much, which covers tarfile's
# 1-byte end-of-data probe, the next 512-byte header and a typical pax header in one request.
TAR_HEADER_READ = 1024

# How a sample gets its words: its own annotations, the OCR engine, or none.
ANN_NONE, ANN_TEXTOCR, ANN_ICDAR, ANN_OCR, ANN_SYNTH = (
    "none",
    "textocr",
    "icdar2015",
    "ocr",
    "synth",
)
ANN_ERROR = "error"  # malformed annotations: ``reject`` holds the reason, the sample is rejected


@dataclass(frozen=True)
class SampleRef:
    """A light reference to one input sample; ``pipeline.samples`` loads and processes it."""

    key: str  # "<source>_<id>", [A-Za-z0-9_-] only
    source: str  # textocr | icdar2015 | imagenet | folder | synthetic
    id: str
    image: str = ""  # fsspec URL of the image, or of the tar file that holds it
    offset: int = -1  # byte offset of the image inside ``image`` (tar member), -1: whole file
    size: int = -1  # image bytes as listed (-1: unknown / missing)
    ann_kind: str = ANN_NONE  # none | textocr | icdar2015 | ocr | synth | error
    index: int = -1  # synthetic: generator index
    words_json: str = ""  # ann_kind textocr: the image's words as compact JSON
    gt_url: str = ""  # ann_kind icdar2015: URL of its gt_*.txt ("" = none found)
    reject: str = ""  # ann_kind error: why its annotations are malformed

    @property
    def annotation(self) -> str:
        """The one annotation field ``ann_kind`` uses ("" for none, ocr and synth)."""
        return {ANN_TEXTOCR: self.words_json, ANN_ICDAR: self.gt_url, ANN_ERROR: self.reject}.get(
            self.ann_kind, ""
        )

    def fingerprint(self) -> str:
        """One line that changes when the sample's inputs change (relative names only)."""
        text = self.annotation
        ann = hashlib.sha256(text.encode()).hexdigest()[:16] if text else "-"
        name = posixpath.basename(self.image) if self.image else str(self.index)
        return f"{self.key}\t{name}\t{self.offset}\t{self.size}\t{self.ann_kind}\t{ann}"


def sanitize_id(text: str) -> str:
    """Ids keep letters, digits, ``-`` and ``_``; everything else (dots included) becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text).strip("_") or "x"


def fingerprint(refs: Iterable[SampleRef]) -> str:
    """sha256 over the references' fingerprint lines (the manifest's source fingerprint)."""
    h = hashlib.sha256()
    for ref in refs:
        h.update(ref.fingerprint().encode() + b"\n")
    return h.hexdigest()


def list_source(
    src: SourceConfig, split: str = "train", synth: SynthConfig | None = None
) -> list[SampleRef]:
    """Sorted, de-duplicated sample references of one source (``limit`` applied last)."""
    if src.kind == "shards":
        raise ConfigError(
            "kind=shards names built shards, not a source to list: only eval.dataset reads them"
        )
    if src.kind == "synthetic":
        refs = _synthetic(src, split, synth or SynthConfig())
    else:
        if not src.images:
            raise ConfigError(f"data.{split}.images is empty; set the {src.kind} image URL")
        lister = {
            "textocr": _textocr,
            "icdar2015": _icdar2015,
            "imagenet": _imagenet,
            "folder": _folder,
        }[src.kind]
        located = dataclasses.replace(
            src, images=absolute_url(src.images), annotations=absolute_url(src.annotations)
        )
        refs = _unique_keys(lister(located, split))
        if src.ocr != "annotations":  # auto: the OCR engine at build time; none: no words
            refs = [_with_words_from(r, src.ocr) for r in refs]
    refs.sort(key=lambda r: r.key)
    return refs[: src.limit] if src.limit > 0 else refs


def absolute_url(url: str) -> str:
    """Local paths made absolute (Ray workers need not share the driver's working dir)."""
    if not url or "://" in url:
        return url
    return os.path.abspath(os.path.expanduser(url))


def _with_words_from(ref: SampleRef, mode: str) -> SampleRef:
    kind = ANN_OCR if mode == "auto" else ANN_NONE
    return SampleRef(ref.key, ref.source, ref.id, ref.image, ref.offset, ref.size, kind)


def _fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(url)


def _list_files(url: str, split: str) -> dict[str, int]:
    """``{relative path: size}`` of all files under a folder URL."""
    fs, root = _fs(url)
    if not fs.isdir(root):
        raise ConfigError(f"data.{split}: {url} is not a folder; point it at the image folder")
    root = root.rstrip("/")
    found = fs.find(root, detail=True)
    return {
        p[len(root) + 1 :]: int(info.get("size") or 0)
        for p, info in found.items()
        if info.get("type", "file") == "file"
    }


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _join(url: str, rel: str) -> str:
    return url.rstrip("/") + "/" + rel


def _unique_keys(refs: list[SampleRef]) -> list[SampleRef]:
    """Keys that collide after sanitising get a short hash of their image name appended."""
    counts = Counter(r.key for r in refs)
    out = []
    for r in refs:
        if counts[r.key] == 1 and len(r.key) <= MAX_KEY_LEN:
            out.append(r)
            continue
        tag = hashlib.sha1(f"{r.image}#{r.offset}".encode()).hexdigest()[:10]
        new_id = f"{r.id[: MAX_KEY_LEN - 32]}_{tag}"
        out.append(dataclasses.replace(r, key=f"{r.source}_{new_id}", id=new_id))
    return out


def _synthetic(src: SourceConfig, split: str, synth: SynthConfig) -> list[SampleRef]:
    """Indices of the synthetic generator; val uses a disjoint index range."""
    n = src.limit if src.limit > 0 else synth.images
    start = VAL_SYNTH_OFFSET if split == "val" else 0
    kind = {"annotations": ANN_SYNTH, "auto": ANN_OCR, "none": ANN_NONE}[src.ocr]
    return [
        SampleRef(f"synth_{i:07d}", "synthetic", f"{i:07d}", ann_kind=kind, index=i)
        for i in range(start, start + n)
    ]


def _textocr(src: SourceConfig, split: str) -> list[SampleRef]:
    """TextOCR: one JSON for the split plus an image folder (``file_name`` or its basename).

    The JSON is parsed once here (``textboost.text.ocr.read_textocr``); each reference carries
    its image's words as compact JSON, or the reason its annotations are malformed.
    """
    from textboost.text.ocr import read_textocr

    if not src.annotations:
        raise ConfigError(f"data.{split}.annotations is empty; set the TextOCR JSON URL")
    index = read_textocr(src.annotations)
    files = _list_files(src.images, split)
    by_base = {posixpath.basename(p): p for p in sorted(files)}
    refs = []
    for img_id in index.image_ids():
        file_name = index.info(img_id).file_name
        rel = file_name if file_name in files else by_base.get(posixpath.basename(file_name))
        rel = rel or file_name
        try:
            words = [w.to_json() for w in index.words(img_id)]
            ann = dict(
                ann_kind=ANN_TEXTOCR,
                words_json=json.dumps(words, separators=(",", ":"), ensure_ascii=False),
            )
        except AnnotationError as exc:
            ann = dict(ann_kind=ANN_ERROR, reject=str(exc))
        sid = sanitize_id(img_id)
        refs.append(
            SampleRef(
                f"textocr_{sid}", "textocr", sid, _join(src.images, rel), -1,
                files.get(rel, -1), **ann,
            )
        )  # fmt: skip
    return refs


def _icdar2015(src: SourceConfig, split: str) -> list[SampleRef]:
    """ICDAR 2015: ``img_N.jpg`` images with ``gt_img_N.txt`` ground-truth files."""
    if not src.annotations and src.ocr == "annotations":
        raise ConfigError(f"data.{split}.annotations is empty; set the ICDAR 2015 gt folder URL")
    files = _list_files(src.images, split)
    gts = _list_files(src.annotations, split) if src.annotations else {}
    gt_by_name = {posixpath.basename(p): p for p in gts}
    refs = []
    for rel in sorted(p for p in files if _is_image(p)):
        stem = posixpath.splitext(posixpath.basename(rel))[0]
        gt = gt_by_name.get(f"gt_{stem}.txt")
        sid = sanitize_id(stem)
        refs.append(
            SampleRef(
                f"icdar2015_{sid}", "icdar2015", sid, _join(src.images, rel), -1,
                files[rel], ANN_ICDAR, gt_url=_join(src.annotations, gt) if gt else "",
            )
        )  # fmt: skip
    return refs


def _folder(src: SourceConfig, split: str) -> list[SampleRef]:
    """Any image folder (recursive); the id is the relative path, extension included."""
    return _image_file_refs(src.images, _list_files(src.images, split), "folder", sanitize_id)


def _image_file_refs(
    root: str, files: dict[str, int], source: str, id_of: Callable[[str], str]
) -> list[SampleRef]:
    """One reference per image file of ``files`` (relative path -> size), sorted by path."""
    return [
        SampleRef(f"{source}_{id_of(rel)}", source, id_of(rel), _join(root, rel), -1, size)
        for rel, size in sorted(files.items())
        if _is_image(rel)
    ]


def _imagenet(src: SourceConfig, split: str) -> list[SampleRef]:
    """ImageNet: class folders of JPEGs, one tar file, or a folder of (per-class) tar files."""
    fs, root = _fs(src.images)
    if fs.isfile(root):
        index = root + TAR_INDEX_SUFFIX
        size = int(fs.size(root))
        return _imagenet_tar(src.images, size, index if fs.exists(index) else None)
    files = _list_files(src.images, split)
    tars = sorted(p for p in files if p.lower().endswith(".tar"))
    if tars:  # many tars are listed in parallel (I/O bound, e.g. on s3://)
        jobs = [
            (
                _join(src.images, rel),
                files[rel],
                _join(src.images, rel + TAR_INDEX_SUFFIX)
                if rel + TAR_INDEX_SUFFIX in files
                else None,
            )
            for rel in tars
        ]
        with ThreadPoolExecutor(16) as pool:
            listed = pool.map(lambda job: _imagenet_tar(*job), jobs)
            return [ref for refs in listed for ref in refs]
    return _image_file_refs(src.images, files, "imagenet", _imagenet_id)


def _imagenet_id(member: str) -> str:
    """``n01440764/n01440764_10026.JPEG`` -> ``n01440764_10026`` (file names are unique)."""
    return sanitize_id(posixpath.splitext(posixpath.basename(member))[0])


def _imagenet_tar(url: str, size: int = -1, index: str | None = None) -> list[SampleRef]:
    """Image members of one uncompressed tar, by byte offset: the sample reads just its range.

    From the sidecar ``index`` when given (it must match the tar's ``size``), else from the
    tar headers (``tar_members``).
    """
    members = read_tar_index(index, size) if index else tar_members(url)
    refs = []
    for name, offset, length in members:
        if _is_image(name):
            sid = _imagenet_id(name)
            refs.append(SampleRef(f"imagenet_{sid}", "imagenet", sid, url, offset, length))
    return refs


def tar_members(url: str) -> list[tuple[str, int, int]]:
    """``(name, data offset, size)`` of the regular files of an uncompressed tar, in order.

    Only headers are read: the file is opened with a small read-ahead (``TAR_HEADER_READ``)
    and tarfile seeks over the member data, so listing a 140 MB class tar on s3:// fetches
    about 1 KiB per member instead of the whole object.
    """
    fs, path = _fs(url)
    members = []
    try:
        with (
            fs.open(path, "rb", block_size=TAR_HEADER_READ, cache_type="readahead") as f,
            tarfile.open(fileobj=f, mode="r:") as tar,
        ):
            for m in tar:
                if m.isfile():
                    members.append((m.name, m.offset_data, m.size))
    except tarfile.TarError as exc:
        raise ConfigError(
            f"{url} is not a readable uncompressed tar ({exc}); extract nested or "
            "compressed archives into per-class .tar files first"
        ) from None
    return members


def tar_index_bytes(url: str) -> bytes:
    """The sidecar index of a tar (``<tar>.idx.json``): its size and regular-file members."""
    fs, path = _fs(url)
    index = {
        "format": TAR_INDEX_FORMAT,
        "tar_size": int(fs.size(path)),
        "members": [list(m) for m in tar_members(url)],
    }
    return json.dumps(index, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def read_tar_index(url: str, tar_size: int = -1) -> list[tuple[str, int, int]]:
    """Members of a sidecar tar index; ``ConfigError`` if it is malformed or stale (the tar's
    size changed since it was written)."""
    redo = f"rebuild it with `python -m jobs.tar_index {url[: -len(TAR_INDEX_SUFFIX)]}`"
    try:
        with fsspec.open(url, "rb") as f:
            data = json.loads(f.read())
        if data.get("format") != TAR_INDEX_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, not {TAR_INDEX_FORMAT!r}")
        members = [(str(n), int(o), int(s)) for n, o, s in data["members"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"tar index {url} is unreadable ({exc}); {redo}") from None
    if tar_size >= 0 and int(data.get("tar_size", -1)) != tar_size:
        raise ConfigError(
            f"tar index {url} is stale: it lists a {data.get('tar_size')}-byte tar, the tar "
            f"has {tar_size} bytes; {redo}"
        )
    return members
