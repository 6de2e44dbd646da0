"""The synthetic scene-text set on disk: TextOCR (``textocr.json``) or ICDAR 2015 (``gt/``) layout.

``generate`` writes ``n`` images of ``textboost.data.synth`` (JPEG, quality 90) and their
annotations, in one process or a process pool; the bytes depend only on ``(seed, index)``.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from PIL import Image

from textboost.data.synth import SynthStyle, SynthWord, check_args, synth_words
from textboost.data.synth_backgrounds import list_backgrounds
from textboost.errors import ConfigError
from textboost.text.vocab import find_fonts
from textboost.text.words import Word

SIZE_BUCKETS = ((0, 8), (8, 12), (12, 20), (20, 30), (30, 50), (50, 1e9))


def image_id(seed: int, index: int) -> str:
    """TextOCR-style 16-hex image id, a function of ``(seed, index)`` only."""
    return hashlib.sha256(f"textboost-synth/{seed}/{index}".encode()).hexdigest()[:16]


def jpeg_bytes(image: Image.Image) -> bytes:
    """The JPEG file written for ``image`` (quality 90, deterministic)."""
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _encode(index: int, seed: int, kwargs: dict) -> tuple[int, bytes, tuple[int, int], list]:
    image, words = synth_words(index, seed, **kwargs)
    return index, jpeg_bytes(image), image.size, words


def _encoded(n_images: int, seed: int, kwargs: dict, workers: int):
    """``_encode`` of images ``0..n-1`` in order, in this process or in a process pool."""
    if workers == 1:
        yield from (_encode(i, seed, kwargs) for i in range(n_images))
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:  # the platform's default start method
        n = n_images
        yield from pool.map(_encode, range(n), [seed] * n, [kwargs] * n, chunksize=2)


def _clear_previous(out: Path) -> None:
    """Remove files of an earlier synthetic set in ``out`` (only names this module writes)."""
    for path in (out / "images").glob("*.jpg"):
        stem = path.stem
        hexid = len(stem) == 16 and all(c in "0123456789abcdef" for c in stem)
        if hexid or (stem.startswith("img_") and stem[4:].isdigit()):
            path.unlink()
    for path in (out / "gt").glob("gt_img_*.txt"):
        path.unlink()
    (out / "textocr.json").unlink(missing_ok=True)


def _textocr_entry(img_id: str, file_name: str, size, words: list[SynthWord], split: str):
    """``(img, {ann_id: ann})`` in the TextOCR layout; area is the bbox area, as in TextOCR."""
    img = {"id": img_id, "width": size[0], "height": size[1], "set": split, "file_name": file_name}
    anns = {}
    for k, sw in enumerate(words, start=1):
        xs, ys = [p[0] for p in sw.word.polygon], [p[1] for p in sw.word.polygon]
        bbox = [min(xs), min(ys), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]
        anns[f"{img_id}_{k}"] = {
            "id": f"{img_id}_{k}",
            "image_id": img_id,
            "bbox": bbox,
            "utf8_string": sw.word.text if sw.word.legible else ".",
            "points": [c for p in sw.word.polygon for c in p],
            "area": round(bbox[2] * bbox[3], 2),
        }
    return img, anns


def icdar_lines(words: list[Word], size: tuple[int, int]) -> str:
    """ICDAR 2015 ground truth text: ``x1,y1,...,x4,y4,transcription`` (``###`` illegible).

    UTF-8 with a BOM and CRLF line ends, as the real set; integer corners inside the image.
    """
    lines = []
    for w in words:
        pts = [
            (min(max(round(x), 0), size[0] - 1), min(max(round(y), 0), size[1] - 1))
            for x, y in w.polygon
        ]
        coords = ",".join(f"{x},{y}" for x, y in pts)
        lines.append(f"{coords},{w.text if w.legible else '###'}\r\n")
    return "\ufeff" + "".join(lines)


class _SetWriter:
    """Writes one synthetic set in the TextOCR or ICDAR 2015 layout and tallies its words."""

    def __init__(self, out: Path, fmt: str, seed: int, split: str) -> None:
        self.out, self.fmt, self.seed, self.split = out, fmt, seed, split
        (out / "images").mkdir(parents=True, exist_ok=True)
        _clear_previous(out)
        if fmt == "icdar2015":
            (out / "gt").mkdir(exist_ok=True)
        self.data: dict = {"imgs": {}, "anns": {}, "imgToAnns": {}}
        self.hist = {f"{lo}-{hi}" if hi < 1e9 else f">={lo}": 0 for lo, hi in SIZE_BUCKETS}
        self.words = self.legible = 0

    def add(self, index: int, jpeg: bytes, size: tuple[int, int], placed: list) -> None:
        if self.fmt == "textocr":
            img_id = image_id(self.seed, index)
            name = f"images/{img_id}.jpg"
            img, anns = _textocr_entry(img_id, name, size, placed, self.split)
            self.data["imgs"][img_id] = img
            self.data["anns"].update(anns)
            self.data["imgToAnns"][img_id] = list(anns)
        else:
            name = f"images/img_{index + 1}.jpg"
            gt = icdar_lines([sw.word for sw in placed], size).encode("utf-8")
            (self.out / "gt" / f"gt_img_{index + 1}.txt").write_bytes(gt)
        (self.out / name).write_bytes(jpeg)
        self.words += len(placed)
        self.legible += sum(sw.word.legible for sw in placed)
        for sw in placed:
            key = next(k for k, (_, hi) in zip(self.hist, SIZE_BUCKETS) if sw.cap_height < hi)
            self.hist[key] += 1

    def close(self) -> Path:
        """Write the TextOCR JSON (atomically); return the annotations path."""
        if self.fmt != "textocr":
            return self.out / "gt"
        tmp = self.out / "textocr.json.tmp"
        tmp.write_text(json.dumps(self.data), encoding="utf-8")
        return tmp.replace(self.out / "textocr.json")


def generate(
    out_dir: str | Path,
    n_images: int,
    seed: int,
    fmt: str = "textocr",
    backgrounds: str | Path | None = None,
    max_side: int = 1024,
    min_side: int = 512,
    words: tuple[int, int] = (4, 24),
    *,
    split: str = "train",
    workers: int = 1,
    style: SynthStyle | None = None,
    progress: bool = False,
    fonts: str = "",
) -> dict:
    """Write ``n_images`` synthetic scene-text images and annotations to ``out_dir``.

    TextOCR: ``images/<id>.jpg`` + ``textocr.json``; ICDAR 2015: ``images/img_N.jpg`` +
    ``gt/gt_img_N.txt``. Files of an earlier synthetic set in ``out_dir`` are replaced.
    Returns a summary (counts, histogram of cap heights, images/s, paths).
    """
    import time

    from tqdm import tqdm

    if fmt not in ("textocr", "icdar2015"):
        raise ConfigError(f"synth format {fmt!r} is not allowed; choose textocr or icdar2015")
    if n_images < 0 or workers < 1:
        raise ConfigError(f"synth needs images >= 0 and workers >= 1, got {n_images}, {workers}")
    check_args(seed, max_side, min_side, words)
    bg = list_backgrounds(backgrounds) if backgrounds else None
    kwargs = dict(max_side=max_side, min_side=min_side, words=tuple(words), backgrounds=bg)
    kwargs["style"] = style
    kwargs["fonts"] = fonts
    start = time.perf_counter()
    writer = _SetWriter(Path(out_dir), fmt, seed, split)
    results = _encoded(n_images, seed, kwargs, workers)
    for index, jpeg, size, placed in tqdm(results, total=n_images, disable=not progress):
        writer.add(index, jpeg, size, placed)
    annotations = writer.close()
    seconds = time.perf_counter() - start
    return {
        "images": n_images,
        "words": writer.words,
        "legible": writer.legible,
        "illegible": writer.words - writer.legible,
        "cap_height_hist": writer.hist,
        "fonts": len(find_fonts(fonts)),
        "seconds": round(seconds, 3),
        "images_per_s": round(n_images / seconds, 2) if seconds > 0 else 0.0,
        "format": fmt,
        "seed": seed,
        "paths": {
            "out": str(writer.out),
            "images": str(writer.out / "images"),
            "annotations": str(annotations),
        },
    }


def generate_from_config(cfg, out_dir: str | Path, **kwargs) -> dict:
    """``generate`` with the fields of a ``SynthConfig`` section."""
    return generate(
        out_dir,
        cfg.images,
        cfg.seed,
        fmt=cfg.format,
        backgrounds=cfg.backgrounds or None,
        max_side=cfg.max_side,
        min_side=cfg.min_side,
        words=(cfg.words_min, cfg.words_max),
        fonts=cfg.fonts,
        **kwargs,
    )
