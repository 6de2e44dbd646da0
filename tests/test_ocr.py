"""Readers: TextOCR JSON, ICDAR 2015 ground truth, RapidOCR output -> Word (paper 5.1.1)."""

from __future__ import annotations

import json

import fsspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textboost.errors import AnnotationError, TextBoostError
from textboost.text.ocr import (
    read_annotations,
    read_icdar2015_gt,
    read_textocr,
    words_from_rapidocr,
)
from textboost.text.words import Word


def textocr_doc() -> dict:
    imgs = {
        "img_a": {"id": "img_a", "width": 640, "height": 480, "set": "train", "file_name": "train/img_a.jpg"},
        "img_b": {"id": "img_b", "width": 100, "height": 50, "set": "train", "file_name": "train/img_b.jpg"},
        "img_c": {"id": "img_c", "width": 10, "height": 10, "set": "train", "file_name": "train/img_c.jpg"},
    }  # fmt: skip
    anns = {
        "img_a_1": {"id": "img_a_1", "image_id": "img_a", "bbox": [10, 20, 30, 10], "utf8_string": "Hello",
                    "points": [10, 20, 40, 20, 40, 30, 10, 30], "area": 300},
        "img_b_1": {"id": "img_b_1", "image_id": "img_b", "bbox": [1, 1, 5, 5], "utf8_string": ".",
                    "points": [1, 1, 6, 1, 6, 6, 1, 6], "area": 25},
        "img_a_2": {"id": "img_a_2", "image_id": "img_a", "bbox": [0, 0, 9, 9], "utf8_string": "Ünï,cödé",
                    "points": [0, 0, 3.5, 0.25, 9, 0, 9, 9, 4.5, 8.75, 0, 9], "area": 81},
    }  # fmt: skip
    img2anns = {"img_a": ["img_a_1", "img_a_2"], "img_b": ["img_b_1"], "img_c": []}
    return {"info": {"v": 1}, "imgs": imgs, "anns": anns, "imgToAnns": img2anns}


def test_textocr_indexes_words_by_image(tmp_path):
    path = tmp_path / "TextOCR_0.1_train.json"
    path.write_text(json.dumps(textocr_doc()), encoding="utf-8")
    for source in (str(path), path, path.read_bytes(), f"file://{path}"):
        index = read_textocr(source)
        assert len(index) == 3 and index.num_words == 3 and not index.errors
        assert index.image_ids() == ["img_a", "img_b", "img_c"]
        assert index.info("img_b").width == 100 and index.info("img_b").file_name.endswith(".jpg")
        hello, unicode_word = index.words("img_a")
        assert hello == Word(((10, 20), (40, 20), (40, 30), (10, 30)), "Hello", True)
        assert unicode_word.text == "Ünï,cödé" and len(unicode_word.polygon) == 6
        assert unicode_word.polygon[1] == (3.5, 0.25)
        assert index.words("img_b") == [Word(((1, 1), (6, 1), (6, 6), (1, 6)), ".", False)]
        assert index.words("img_c") == []
    with pytest.raises(AnnotationError, match="no image with id 'nope'"):
        index.words("nope")


def test_textocr_over_fsspec_memory():
    with fsspec.open("memory://textocr/val.json", "wb") as f:
        f.write(json.dumps(textocr_doc()).encode())
    assert read_textocr("memory://textocr/val.json").num_words == 3
    with pytest.raises(AnnotationError, match="does not exist"):
        read_textocr("memory://textocr/missing.json")


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"points": [1, 2, 3]}, "img_a_1"),
        ({"points": [0, 0, 5, 0, 5, "x", 0, 5]}, "not a finite number"),
        ({"points": [0, 0, 5, 0, 5, True, 0, 5]}, "not a finite number"),
        ({"points": [0, 0, 5, 0, 5, 1e999, 0, 5]}, "not a finite number"),
        ({"utf8_string": None}, "utf8_string"),
        ({"points": None, "bbox": None}, "points"),
    ],
)
def test_malformed_annotation_names_file_and_annotation(tmp_path, patch, message):
    doc = textocr_doc()
    doc["anns"]["img_a_1"].update(patch)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    index = read_textocr(path)
    assert index.words("img_b")  # the other images stay usable
    with pytest.raises(AnnotationError, match=message) as err:
        index.words("img_a")
    assert "bad.json" in str(err.value) and "img_a_1" in str(err.value)
    with pytest.raises(AnnotationError, match="img_a_1"):
        read_textocr(path, strict=True)


def test_bbox_is_used_when_points_are_missing():
    doc = textocr_doc()
    del doc["anns"]["img_a_1"]["points"]
    (word, _) = read_textocr(json.dumps(doc).encode()).words("img_a")
    assert word.polygon == ((10, 20), (40, 20), (40, 30), (10, 30))


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "not a valid JSON"),
        (b"{not json", "not a valid JSON"),
        (b"[1, 2]", "not a TextOCR file"),
        (b'{"imgs": {}}', "not a TextOCR file"),
        (
            b'{"imgs": {"a": {"id": "a", "width": -1, "height": 2, "file_name": "x"}}, "anns": {}}',
            "size",
        ),
        (b"\xff\xfe{}", "not a valid JSON"),
    ],
)
def test_malformed_textocr_file(blob, message):
    with pytest.raises(AnnotationError, match=message):
        read_textocr(blob)


def test_annotation_of_unknown_image():
    doc = textocr_doc()
    doc["anns"]["img_a_1"]["image_id"] = "ghost"
    assert read_textocr(json.dumps(doc).encode()).num_words == 3  # dropped from the index
    with pytest.raises(AnnotationError, match="ghost"):
        read_textocr(json.dumps(doc).encode(), strict=True)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_readers(blob):
    for reader in (read_textocr, read_icdar2015_gt):
        try:
            reader(blob)
        except AnnotationError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_textocr_raises_only_annotation_error(data):
    blob = bytearray(json.dumps(textocr_doc()).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    try:
        index = read_textocr(bytes(blob))
        for image_id in index.image_ids():
            try:
                index.words(image_id)
            except AnnotationError:
                pass
    except AnnotationError:
        pass


ICDAR = (
    "\ufeff377,117,463,117,465,130,378,130,Genaxis Theatre\r\n"
    "493,115,519,115,519,131,493,131,[06]\r\n"
    "374,155,409,155,409,170,374,170,###\r\n"
    "10,10,50,10,50,20,10,20,1,000,000\r\n"
    "\r\n"
    "1.5,2,8,2,8,9.25,1.5,9,\r\n"
)


def test_icdar2015_bom_commas_and_illegible(tmp_path):
    path = tmp_path / "gt_img_1.txt"
    path.write_bytes(ICDAR.encode("utf-8"))
    for source in (path.read_bytes(), ICDAR, str(path), path):
        words = read_icdar2015_gt(source)
        assert [w.text for w in words] == ["Genaxis Theatre", "[06]", "###", "1,000,000", ""]
        assert [w.legible for w in words] == [True, True, False, True, True]
        assert words[0].polygon == ((377, 117), (463, 117), (465, 130), (378, 130))
        assert words[4].polygon[2] == (8.0, 9.25)
    assert read_icdar2015_gt(b"") == [] and read_icdar2015_gt("\ufeff") == []
    assert read_annotations(path)[1].text == "[06]"


@pytest.mark.parametrize(
    "line, message",
    [
        ("1,2,3,4,5,6,7,word", "line 1: expected"),
        ("1,2,3,4,5,6,7,x,word", "line 1: bad coordinate"),
        ("1,2,3,4,5,6,7,nan,word", "line 1: bad coordinate"),
    ],
)
def test_icdar2015_malformed_line(line, message):
    with pytest.raises(AnnotationError, match=message):
        read_icdar2015_gt(line.encode())
    with pytest.raises(AnnotationError, match="gt_img_7.txt line 2"):
        read_icdar2015_gt(("1,1,5,1,5,5,1,5,ok\n" + line).encode(), name="gt_img_7.txt")
    with pytest.raises(AnnotationError, match="not UTF-8"):
        read_icdar2015_gt(b"1,1,5,1,5,5,1,5,\xff\xfe")


def test_rapidocr_result_forms():
    box = [[18.0, 36.0], [254.0, 37.0], [254.0, 74.0], [18.0, 73.0]]
    result = [[box, "HELLO", 0.97], [box, "faint", 0.2]]
    words = words_from_rapidocr(result)
    assert [w.text for w in words] == ["HELLO", "faint"] and all(w.legible for w in words)
    assert words[0].polygon[1] == (254.0, 37.0)
    assert words_from_rapidocr((result, [0.1, 0.2, 0.3]), min_score=0.5)[0].text == "HELLO"
    assert len(words_from_rapidocr((result, [0.1, 0.2, 0.3]), min_score=0.5)) == 1
    assert words_from_rapidocr(None) == [] and words_from_rapidocr((None, None)) == []
    as_numpy = [[np.asarray(box, dtype=np.float32), "np", np.float32(0.9)]]
    assert words_from_rapidocr(as_numpy)[0].polygon[0] == (18.0, 36.0)
    for bad in ([[box, "x"]], [[box[:2], "x", 0.5]], [[box, 3, 0.5]], "text", [[box, "x", "hi"]]):
        with pytest.raises(AnnotationError):
            words_from_rapidocr(bad)


@pytest.mark.slow
def test_real_rapidocr_engine_reads_rendered_text():
    from PIL import Image, ImageDraw

    from textboost.text.guidance import font
    from textboost.text.ocr import ocr_image_words

    image = Image.new("RGB", (320, 120), "white")
    ImageDraw.Draw(image).text((20, 30), "HELLO 2024", fill="black", font=font(40))
    words = ocr_image_words(image, min_score=0.5)
    assert any("HELLO" in w.text for w in words)
    (word,) = [w for w in words if "HELLO" in w.text]
    xs = [x for x, _ in word.polygon]
    assert min(xs) < 40 and max(xs) > 200  # the box covers the rendered line


def test_synthetic_textocr_round_trip(tmp_path):
    from textboost.data import synth, synth_sets

    summary = synth_sets.generate(tmp_path, 2, seed=3, fmt="textocr", max_side=256, min_side=128)
    index = read_textocr(tmp_path / "textocr.json")
    assert len(index) == 2 and index.num_words == summary["words"]
    for image_id in index.image_ids():
        info = index.info(image_id)
        assert (tmp_path / info.file_name).is_file()
    for i in range(2):
        _, expected = synth.synth_image(i, 3, max_side=256, min_side=128)
        got = index.words(synth_sets.image_id(3, i))
        assert [w.text if w.legible else "." for w in expected] == [w.text for w in got]
        assert all(np.allclose(a.polygon, b.polygon) for a, b in zip(expected, got))


def test_errors_are_textboost_errors():
    assert issubclass(AnnotationError, TextBoostError)
