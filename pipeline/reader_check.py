"""A second reader (``jobs.bench_reader``): word recognition by Tesseract, an OCR engine
independent of the RapidOCR that both the evaluation's spotter and the encoder's legibility
check (``eval.select: legible``) use.

For each evaluated image and method (the rows of ``pipeline.eval_image.evaluate_sample`` plus
the original), every legible ground-truth word is cut out of the reconstruction (rectified
along its polygon, a quarter of its height added on each side, 64 px high, grey levels
stretched) and read by Tesseract as one line (``--psm 7``); a word counts as read when the transcription matches
(the ICDAR end-to-end rule: case-folded, edge punctuation stripped). The ground truth gives
the location, so this scores recognition only: whether the pixels carry the word.
"""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from textboost.errors import TextBoostError

CROP_HEIGHT = 64
PAD = 0.25  # of the word's box height, each side


def tesseract_command(root: str = "assets/tesseract") -> tuple[list[str], dict]:
    """(argv prefix, environment) of Tesseract: ``tools/install_tesseract.sh``'s copy under
    ``root``, else one on the PATH."""
    local = Path(root) / "usr/bin/tesseract"
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    if local.is_file():
        env["LD_LIBRARY_PATH"] = str(Path(root) / "usr/lib/x86_64-linux-gnu")
        data = next(Path(root).glob("usr/share/tesseract-ocr/*/tessdata"), None)
        if data is not None:
            env["TESSDATA_PREFIX"] = str(data)
        return [str(local)], env
    from shutil import which

    if which("tesseract"):
        return ["tesseract"], env
    raise TextBoostError(
        "Tesseract not found: run tools/install_tesseract.sh (Debian packages into "
        "assets/tesseract) or install tesseract-ocr"
    )


def word_crop(image: Image.Image, polygon) -> Image.Image | None:
    """The word rectified to a horizontal strip ``CROP_HEIGHT`` px high (a 4-point polygon,
    top-left first, clockwise, as TextOCR and ICDAR 2015 give it; other polygons: their
    axis-aligned box), with ``PAD`` of its height as margin; None: an empty box."""
    pts = np.asarray(polygon, dtype=np.float64)
    if len(pts) != 4:
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    tl, tr, br, bl = pts
    width = (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2
    height = (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2
    if width < 2 or height < 2:
        return None
    u, v = (tr - tl + br - bl) / (2 * width), (bl - tl + br - tr) / (2 * height)
    m = PAD * height  # margin along both axes
    tl, tr, br, bl = tl - m * u - m * v, tr + m * u - m * v, br + m * u + m * v, bl - m * u + m * v
    out_w = max(1, round((width + 2 * m) * CROP_HEIGHT / (height + 2 * m)))
    quad = (*tl, *bl, *br, *tr)  # PIL's QUAD: upper-left, lower-left, lower-right, upper-right
    return image.transform((out_w, CROP_HEIGHT), Image.QUAD, quad, Image.BICUBIC)


def read_word(crop: Image.Image, command: tuple[list[str], dict]) -> str:
    """Tesseract's reading of one word crop (one text line, English)."""
    import io

    buf = io.BytesIO()
    crop.save(buf, format="PNG")
    argv, env = command
    out = subprocess.run(
        [*argv, "stdin", "stdout", "--psm", "7", "-l", "eng"],
        input=buf.getvalue(), capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise TextBoostError(f"tesseract failed: {out.stderr.decode(errors='replace')[-200:]}")
    return out.stdout.decode("utf-8", errors="replace").strip()


def read_counts(sample, recon: dict[str, Image.Image], command) -> dict[str, list[int]]:
    """method -> [words read, words] for one image's reconstructions (and the original)."""
    from textboost.scoring.f1 import transcriptions_match

    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    words = [w for w in sample.gt or [] if w.legible and w.text != "###"]
    for method, image in {"original": sample.image, **recon}.items():
        for word in words:
            crop = word_crop(image, word.polygon)
            crop = None if crop is None else ImageOps.autocontrast(crop.convert("L"))
            counts[method][1] += 1
            if crop is not None and transcriptions_match(word.text, read_word(crop, command)):
                counts[method][0] += 1
    return dict(counts)
