"""Sources (listing, keys, fingerprints) and the per-sample function, without Ray."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from pipeline.image_io import read_range
from pipeline.samples import Reject, SampleSpec, process_sample
from pipeline.sources import fingerprint, list_source
from textboost.config import SourceConfig, SynthConfig
from textboost.errors import ConfigError

SPEC = SampleSpec(threshold=800.0)


@pytest.fixture(scope="module")
def textocr_dir(tmp_path_factory) -> Path:
    from textboost.data.synth_sets import generate

    out = tmp_path_factory.mktemp("textocr")
    generate(out, 4, seed=3, max_side=256, min_side=128, words=(2, 5))
    return out


def _textocr(root: Path, **kw) -> SourceConfig:
    return SourceConfig(
        kind="textocr", images=str(root / "images"), annotations=str(root / "textocr.json"), **kw
    )


def _jpeg(color: tuple[int, int, int], size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_textocr_refs_are_sorted_keyed_and_fingerprinted(textocr_dir: Path, tmp_path: Path):
    refs = list_source(_textocr(textocr_dir))
    keys = [r.key for r in refs]
    assert keys == sorted(keys) and len(set(keys)) == 4
    assert all(k.startswith("textocr_") and "." not in k for k in keys)
    assert all(Path(r.image).is_file() and r.size == Path(r.image).stat().st_size for r in refs)
    assert [r.key for r in list_source(_textocr(textocr_dir, limit=2))] == keys[:2]
    assert fingerprint(refs) == fingerprint(list_source(_textocr(textocr_dir)))
    # a changed input changes the fingerprint
    copy = tmp_path / "copy"
    fs = fsspec.filesystem("file")
    fs.copy(str(textocr_dir), str(copy), recursive=True)
    assert fingerprint(list_source(_textocr(copy))) == fingerprint(refs)  # location-free
    first = copy / "images" / Path(refs[0].image).name
    first.write_bytes(first.read_bytes() + b"\0")
    assert fingerprint(list_source(_textocr(copy))) != fingerprint(refs)


def test_textocr_sample_keeps_original_bytes_and_renders_decoded_side_info(textocr_dir: Path):
    from textboost.text.guidance import render_guidance
    from textboost.text.side_info import decode_side_info

    ref = list_source(_textocr(textocr_dir))[0]
    sample = process_sample(ref, SPEC)
    assert not isinstance(sample, Reject), sample
    assert sample["jpg"] == Path(ref.image).read_bytes()
    meta = json.loads(sample["meta.json"])
    ocr = json.loads(sample["ocr.json"])
    width, height = Image.open(io.BytesIO(sample["jpg"])).size
    assert (meta["width"], meta["height"]) == (ocr["width"], ocr["height"]) == (width, height)
    assert meta["words"]["kept"] == len(ocr["words"])
    assert meta["words"]["input"] == meta["words"]["kept"] + meta["words"]["dropped"]
    guide = np.asarray(Image.open(io.BytesIO(sample["guide.png"])))
    assert guide.shape == (height, width) and guide.dtype == np.uint8
    expected = render_guidance(decode_side_info(sample["side.bin"]), height, width)
    np.testing.assert_array_equal(guide, expected)
    assert (guide.max() > 0) == (meta["words"]["kept"] > 0)
    assert process_sample(ref, SPEC) == sample  # deterministic


def test_bad_inputs_become_rejects_with_reasons(tmp_path: Path):
    root = tmp_path / "imgs"
    root.mkdir()
    good = _jpeg((200, 10, 10))
    (root / "a_good.jpg").write_bytes(good)
    (root / "b_truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "c_text.jpg").write_bytes(b"this is not an image")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "GIF")
    (root / "d_anim.gif").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (0, 90, 0)).save(buf, "PNG")
    (root / "e_photo.jpg").write_bytes(buf.getvalue())  # a PNG with a .jpg name
    refs = list_source(SourceConfig(kind="folder", images=str(root), ocr="none"))
    out = {r.id: process_sample(r, SPEC) for r in refs}
    assert out["a_good_jpg"]["jpg"] == good
    assert out["e_photo_jpg"]["png"] == (root / "e_photo.jpg").read_bytes()
    for bad, why in [("b_truncated_jpg", "ImageError"), ("c_text_jpg", "unsupported image")]:
        assert isinstance(out[bad], Reject) and why in out[bad].reason, out[bad]
    assert "unsupported image format" in out["d_anim_gif"].reason
    (root / "a_good.jpg").unlink()
    missing = process_sample(refs[0], SPEC)
    assert isinstance(missing, Reject) and "not found" in missing.reason


def test_malformed_textocr_annotation_rejects_only_that_image(textocr_dir: Path, tmp_path: Path):
    data = json.loads((textocr_dir / "textocr.json").read_text())
    ann_id = sorted(data["anns"])[0]
    bad_image = data["anns"][ann_id]["image_id"]
    data["anns"][ann_id]["points"] = ["x", 1, 2, 3]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    src = SourceConfig(
        kind="textocr", images=str(textocr_dir / "images"), annotations=str(tmp_path / "bad.json")
    )
    results = {r.id: process_sample(r, SPEC) for r in list_source(src)}
    assert isinstance(results[bad_image], Reject)
    assert "AnnotationError" in results[bad_image].reason and ann_id in results[bad_image].reason
    assert sum(isinstance(v, Reject) for v in results.values()) == 1


def test_icdar2015_missing_and_malformed_ground_truth(tmp_path: Path):
    from textboost.data.synth_sets import generate

    generate(tmp_path, 3, seed=5, fmt="icdar2015", max_side=128, min_side=96, words=(1, 3))
    (tmp_path / "gt" / "gt_img_2.txt").unlink()
    (tmp_path / "gt" / "gt_img_3.txt").write_text("1,2,3,oops\n")
    src = SourceConfig(
        kind="icdar2015", images=str(tmp_path / "images"), annotations=str(tmp_path / "gt")
    )
    results = {r.id: process_sample(r, SPEC) for r in list_source(src, "val")}
    assert not isinstance(results["img_1"], Reject)
    assert isinstance(results["img_2"], Reject) and "gt_img_2.txt" in results["img_2"].reason
    assert isinstance(results["img_3"], Reject) and "AnnotationError" in results["img_3"].reason


def test_imagenet_class_folders_and_tars_list_the_same_samples(tmp_path: Path):
    images = {
        f"n0{c}/n0{c}_{i}.JPEG": _jpeg((40 * c, 20 * i, 7)) for c in (1, 2) for i in (1, 2, 3)
    }
    for rel, data in images.items():
        (tmp_path / "folders" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "folders" / rel).write_bytes(data)
    (tmp_path / "tars").mkdir()
    for c in (1, 2):
        with tarfile.open(tmp_path / "tars" / f"n0{c}.tar", "w") as tar:
            for rel, data in sorted(images.items()):
                if rel.startswith(f"n0{c}/"):
                    info = tarfile.TarInfo(rel.split("/")[1])
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    by_folder = list_source(SourceConfig(kind="imagenet", images=str(tmp_path / "folders")))
    by_tar = list_source(SourceConfig(kind="imagenet", images=str(tmp_path / "tars")))
    one_tar = list_source(SourceConfig(kind="imagenet", images=str(tmp_path / "tars" / "n01.tar")))
    assert [r.key for r in by_folder] == [r.key for r in by_tar] == sorted(r.key for r in by_tar)
    assert [r.key for r in one_tar] == ["imagenet_n01_1", "imagenet_n01_2", "imagenet_n01_3"]
    for ref in by_tar:
        assert (
            ref.offset > 0
            and read_range(ref.image, ref.offset, ref.size) == images[f"{ref.id[:3]}/{ref.id}.JPEG"]
        )
        sample = process_sample(ref, SPEC)
        assert sample["jpg"] == images[f"{ref.id[:3]}/{ref.id}.JPEG"]
        assert json.loads(sample["ocr.json"])["words"] == []


def test_keys_stay_unique_and_dot_free(tmp_path: Path):
    for name in ("a.b.jpg", "a_b.jpg", "sub/x.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(_jpeg((1, 2, 3)))
    keys = [r.key for r in list_source(SourceConfig(kind="folder", images=str(tmp_path)))]
    assert len(keys) == len(set(keys)) == 3
    assert all("." not in k and "/" not in k for k in keys)


def test_memory_source_and_errors(tmp_path: Path):
    fs = fsspec.filesystem("memory")
    fs.pipe("/srcmem/imgs/one.jpg", _jpeg((9, 9, 9)))
    refs = list_source(SourceConfig(kind="folder", images="memory://srcmem/imgs", ocr="none"))
    assert [r.key for r in refs] == ["folder_one_jpg"]
    assert process_sample(refs[0], SPEC)["jpg"] == fs.cat("/srcmem/imgs/one.jpg")
    with pytest.raises(ConfigError, match="not a folder"):
        list_source(SourceConfig(kind="folder", images=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="annotations"):
        list_source(SourceConfig(kind="textocr", images=str(tmp_path)))


def test_synthetic_refs_and_samples_follow_the_generator():
    from textboost.data.synth import synth_image

    train = list_source(SourceConfig(kind="synthetic", limit=2), "train", SynthConfig())
    val = list_source(SourceConfig(kind="synthetic", limit=2), "val", SynthConfig())
    assert {r.index for r in train}.isdisjoint({r.index for r in val})
    kwargs = {"max_side": 128, "min_side": 96, "words": (2, 4), "backgrounds": None}
    spec = SampleSpec(threshold=800.0, synth=kwargs, synth_seed=7)
    sample = process_sample(train[1], spec)
    image, words = synth_image(1, 7, **kwargs)
    assert Image.open(io.BytesIO(sample["jpg"])).size == image.size
    assert json.loads(sample["meta.json"])["words"]["input"] == len(words)
    assert process_sample(train[1], spec) == sample


@pytest.mark.slow
def test_folder_with_ocr_engine(textocr_dir: Path):
    """ocr=auto runs RapidOCR at build time; the words found drive side info and guidance."""
    src = SourceConfig(kind="folder", images=str(textocr_dir / "images"), ocr="auto")
    samples = [process_sample(r, SPEC) for r in list_source(src)]
    metas = [json.loads(s["meta.json"]) for s in samples]
    assert all(m["words_from"] == "ocr" for m in metas)
    assert sum(m["words"]["input"] for m in metas) > 0  # the engine reads the synthetic text
    best = max(range(len(metas)), key=lambda i: metas[i]["words"]["kept"])
    assert metas[best]["words"]["kept"] > 0 and samples[best]["side.bin"]
    assert process_sample(list_source(src)[best], SPEC) == samples[best]  # reproducible


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (200, 131)])
def test_guide_png_encoder_round_trips(shape):
    from pipeline.png import encode_png

    array = np.random.default_rng(shape[0]).integers(0, 256, shape, dtype=np.uint8)
    array[: shape[0] // 2] = 0  # mostly-zero rows, like a guidance map
    image = Image.open(io.BytesIO(encode_png(array)))
    assert image.mode == "L" and image.size == (shape[1], shape[0])
    np.testing.assert_array_equal(np.asarray(image), array)
    assert encode_png(array) == encode_png(array.copy())
