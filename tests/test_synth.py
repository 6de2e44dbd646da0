"""Synthetic scene-text set: formats, determinism, backgrounds, CLI and OCR readability."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs.synth import main as synth_main
from jobs.synth import ocr_read_flags
from textboost.data.synth import SynthStyle, synth_image
from textboost.data.synth_sets import generate, jpeg_bytes
from textboost.errors import ConfigError, TextBoostError
from textboost.text.vocab import BUILTIN_FONT, find_fonts, random_word

SMALL = dict(max_side=256, min_side=160)
SEED = 3
# more illegible words than the default so that every small set exercises "." and "###"
STYLE = SynthStyle(illegible_prob=0.3)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _clockwise(points: list[tuple[float, float]]) -> bool:
    """Shoelace sum > 0 in image coordinates (y down) means clockwise on screen."""
    pts = points + points[:1]
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:])) > 0


@pytest.fixture(scope="module")
def textocr_set(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("textocr")
    return out, generate(out, 4, SEED, **SMALL, style=STYLE)


def test_vocabulary_and_fonts():
    rng = np.random.default_rng(0)
    words = {random_word(rng) for _ in range(3000)}
    assert len(words) > 500  # varied: signs, names, numbers, prices, times, codes
    assert any(w.isupper() for w in words) and any(w.islower() for w in words)
    assert any(w.startswith("$") for w in words) and any(w.isdigit() for w in words)
    for w in words:  # one ICDAR-safe token each, never an illegible marker
        assert w and w.isascii() and w.isprintable() and "," not in w and " " not in w
        assert w not in (".", "###")
    assert find_fonts()[-1] == BUILTIN_FONT  # always at least Pillow's own font


def test_textocr_format(textocr_set):
    out, summary = textocr_set
    data = json.loads((out / "textocr.json").read_text())
    assert set(data) == {"imgs", "anns", "imgToAnns"}
    assert len(data["imgs"]) == summary["images"] == 4
    assert len(data["anns"]) == summary["words"] > 0
    assert set(data["imgToAnns"]) == set(data["imgs"])
    listed = [a for ids in data["imgToAnns"].values() for a in ids]
    assert sorted(listed) == sorted(data["anns"])
    illegible = 0
    for img_id, img in data["imgs"].items():
        assert re.fullmatch(r"[0-9a-f]{16}", img_id) and img["id"] == img_id
        assert img["file_name"] == f"images/{img_id}.jpg" and img["set"] == "train"
        with Image.open(out / img["file_name"]) as im:
            assert im.format == "JPEG" and im.size == (img["width"], img["height"])
        assert max(img["width"], img["height"]) == 256
        for k, ann_id in enumerate(data["imgToAnns"][img_id], start=1):
            ann = data["anns"][ann_id]
            assert ann_id == ann["id"] == f"{img_id}_{k}" and ann["image_id"] == img_id
            xs, ys = ann["points"][0::2], ann["points"][1::2]
            assert len(ann["points"]) == 8
            assert all(0 <= x <= img["width"] for x in xs) and all(
                0 <= y <= img["height"] for y in ys
            )
            assert _clockwise(list(zip(xs, ys)))
            x, y, w, h = ann["bbox"]
            assert (x, y) == (min(xs), min(ys))
            assert w == pytest.approx(max(xs) - x, abs=0.011)
            assert h == pytest.approx(max(ys) - y, abs=0.011)
            assert ann["area"] > 0 and ann["area"] == pytest.approx(w * h, abs=0.01)
            assert ann["utf8_string"] and ann["utf8_string"] != "###"
            illegible += ann["utf8_string"] == "."
    assert illegible == summary["illegible"] > 0


def test_in_memory_image_equals_written_files(textocr_set):
    out, _ = textocr_set
    data = json.loads((out / "textocr.json").read_text())
    for index, (img_id, img) in enumerate(data["imgs"].items()):
        image, words = synth_image(index, SEED, **SMALL, style=STYLE)
        assert jpeg_bytes(image) == (out / img["file_name"]).read_bytes()
        anns = [data["anns"][a] for a in data["imgToAnns"][img_id]]
        assert [a["utf8_string"] for a in anns] == [w.text for w in words]
        assert [a["points"] for a in anns] == [[c for p in w.polygon for c in p] for w in words]
        assert all(w.legible == (w.text != ".") for w in words)


def test_icdar2015_format(tmp_path):
    summary = generate(tmp_path, 3, SEED, fmt="icdar2015", **SMALL, style=STYLE)
    assert sorted(p.name for p in (tmp_path / "gt").iterdir()) == [
        f"gt_img_{i}.txt" for i in (1, 2, 3)
    ]
    n_words = n_dont_care = 0
    for i in (1, 2, 3):
        with Image.open(tmp_path / "images" / f"img_{i}.jpg") as im:
            width, height = im.size
        raw = (tmp_path / "gt" / f"gt_img_{i}.txt").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") and raw.endswith(b"\r\n")
        _, words = synth_image(i - 1, SEED, **SMALL, style=STYLE)
        lines = raw.decode("utf-8-sig").split("\r\n")[:-1]
        assert len(lines) == len(words)
        for line, word in zip(lines, words):
            fields = line.split(",", 8)
            coords = [int(v) for v in fields[:8]]  # 8 plain integers
            assert all(0 <= x < width for x in coords[0::2])
            assert all(0 <= y < height for y in coords[1::2])
            assert _clockwise(list(zip(coords[0::2], coords[1::2])))
            assert fields[8] == (word.text if word.legible else "###")
            n_dont_care += fields[8] == "###"
            n_words += 1
    assert n_words == summary["words"] and n_dont_care == summary["illegible"] > 0


def test_same_seed_same_bytes_any_count_or_workers(tmp_path):
    generate(tmp_path / "a", 3, 11, **SMALL)
    generate(tmp_path / "b", 3, 11, **SMALL, workers=2)
    generate(tmp_path / "c", 5, 11, **SMALL)
    generate(tmp_path / "d", 3, 12, **SMALL)
    a, b, c, d = (_files(tmp_path / k) for k in "abcd")
    assert a == b  # same bytes, whatever the worker count
    images_a = {k: v for k, v in a.items() if k.endswith(".jpg")}
    assert len(images_a) == 3 and all(c[k] == v for k, v in images_a.items())
    json_a, json_c = json.loads(a["textocr.json"]), json.loads(c["textocr.json"])
    assert all(json_c["anns"][k] == v for k, v in json_a["anns"].items())
    assert a["textocr.json"] != d["textocr.json"]
    assert not set(images_a.values()) & {v for k, v in d.items() if k.endswith(".jpg")}


def test_rerun_replaces_an_earlier_set(tmp_path):
    generate(tmp_path, 4, 0, fmt="icdar2015", **SMALL)
    (tmp_path / "notes.txt").write_text("kept")
    generate(tmp_path, 2, 0, **SMALL)
    assert len(list((tmp_path / "images").iterdir())) == 2
    assert not list((tmp_path / "gt").iterdir())
    assert (tmp_path / "notes.txt").read_text() == "kept"


def test_photo_backgrounds_are_used(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (400, 300), (200, 30, 30)).save(photos / "red.png")
    (photos / "readme.txt").write_text("not a photo")
    image, _ = synth_image(0, 0, backgrounds=photos, **SMALL)
    r, g, b = np.median(np.asarray(image).reshape(-1, 3), axis=0)
    assert r > g + 80 and r > b + 80  # the red photo shows through around the words
    summary = generate(tmp_path / "out", 2, 0, backgrounds=photos, **SMALL)
    assert summary["images"] == 2


@pytest.mark.parametrize("make", ["missing", "empty", "not_images"])
def test_bad_backgrounds_folder(tmp_path, make):
    folder = tmp_path / "bg"
    if make != "missing":
        folder.mkdir()
    if make == "not_images":
        (folder / "photo.jpg").write_text("this is not a JPEG")
    with pytest.raises(TextBoostError, match="backgrounds folder"):
        generate(tmp_path / "out", 1, 0, backgrounds=folder, **SMALL)
    with pytest.raises(TextBoostError, match="backgrounds folder"):
        synth_main(["--out", str(tmp_path / "o2"), "--images", "1", "--backgrounds", str(folder)])


def test_bad_arguments():
    with pytest.raises(ConfigError, match="min_side"):
        synth_image(0, 0, max_side=256, min_side=300)
    with pytest.raises(ConfigError, match="format"):
        generate("/nonexistent/never/written", 1, 0, fmt="coco")
    with pytest.raises(ConfigError, match="seed"):
        synth_image(0, -1)


def test_cli_flags_and_config(tmp_path, capsys):
    out = tmp_path / "flags"
    argv = ["--out", str(out), "--images", "2", "--seed", "5", "--format", "icdar2015"]
    assert synth_main([*argv, "--max-side", "256", "--min-side", "128", "--words", "2", "3"]) == 0
    assert "2 images" in capsys.readouterr().out
    assert len(list((out / "gt").iterdir())) == 2
    for gt in (out / "gt").iterdir():
        assert 0 < len(gt.read_bytes().decode("utf-8-sig").splitlines()) <= 3
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  synth:\n    images: 3\n    max_side: 256\n    min_side: 128\n")
    assert synth_main(["--config", str(cfg), f"workdir={tmp_path}", "data.synth.images=2"]) == 0
    data = json.loads((tmp_path / "data" / "synth" / "textocr.json").read_text())
    assert len(data["imgs"]) == 2


def test_rapidocr_reads_large_words_not_tiny_ones():
    """The "good enough" check: a real OCR engine reads large horizontal words, not tiny ones.

    Measured with this engine (RapidOCR 1.4.4, PP-OCRv4) on such words (cap height 28-48 px,
    horizontal, legible): 78-100% of them are read exactly, depending on the seed; of 6-8 px
    words 0-10%. The bounds (>= 60% and <= 40%) leave room for engine/platform variation, yet
    fail if the text were garbled, mis-annotated (a shifted polygon matches no detection) or
    unreadably rendered, or if tiny words were as easy to read as large ones.
    """
    from textboost.text.ocr import run_rapidocr

    shares = []
    for cap_min, cap_max, n_images in ((28.0, 48.0, 3), (6.0, 8.0, 2)):
        style = SynthStyle(cap_min=cap_min, cap_max=cap_max, max_angle=0.0, illegible_prob=0.0)
        read = total = 0
        for index in range(n_images):
            image, words = synth_image(
                index, 7, max_side=512, min_side=384, words=(6, 10), style=style
            )
            decoded = Image.open(io.BytesIO(jpeg_bytes(image)))
            result = run_rapidocr(decoded)  # the shared engine, RGB -> BGR
            flags = ocr_read_flags(result, words)
            read, total = read + sum(flags), total + len(flags)
        assert total >= 10
        shares.append(read / total)
    assert shares[0] >= 0.6, shares
    assert shares[1] <= 0.4, shares
