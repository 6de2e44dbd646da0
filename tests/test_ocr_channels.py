"""Every RapidOCR call site hands the engine the BGR array it expects (issue 13, item 9).

RapidOCR reads a numpy array as OpenCV BGR (a PIL image it converts itself). The test image,
red text on blue, OCRs differently when the channels are swapped ("Paris Metro" becomes one
line instead of two words), so each call site below fails if it passes an RGB array. The
reference is ``textboost compress --ocr auto`` and, independently of our conversion, the
engine's own PIL path. Real engine, no mocks.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from textboost.text.ocr import rapidocr_engine, to_rapidocr, words_from_rapidocr

pytestmark = pytest.mark.slow  # RapidOCR inference: ~2-3 s per call here


@pytest.fixture(scope="module")
def image() -> Image.Image:
    from textboost.text.guidance import font

    im = Image.new("RGB", (360, 200), (20, 20, 230))
    draw = ImageDraw.Draw(im)
    draw.text((20, 20), "HELLO 2024", fill=(230, 20, 20), font=font(40))
    draw.text((20, 100), "Paris Metro", fill=(230, 20, 20), font=font(36))
    return im


def _texts(words) -> list[str]:
    return [w.text for w in words]


@pytest.fixture(scope="module")
def expected(image):
    """compress --ocr auto's words, checked against the engine's own PIL -> BGR path."""
    from jobs.compress import ocr_words

    words = ocr_words(image, "auto", None)
    own = words_from_rapidocr(rapidocr_engine()(image))  # RapidOCR converts PIL RGB itself
    assert words == own
    assert _texts(words) == ["HELLO 2024", "Paris", "Metro"]
    swapped = words_from_rapidocr(rapidocr_engine()(np.asarray(image)))  # the old bug
    assert _texts(swapped) != _texts(words)  # the image detects a channel swap
    return words


def test_conversion_is_bgr_and_rejects_bad_input(image):
    rgb = np.asarray(image)
    bgr = to_rapidocr(image)
    assert bgr.flags.c_contiguous and bgr.dtype == np.uint8
    np.testing.assert_array_equal(bgr, rgb[:, :, ::-1])
    np.testing.assert_array_equal(to_rapidocr(rgb), bgr)
    gray = to_rapidocr(np.full((4, 5), 7, np.uint8))
    assert gray.shape == (4, 5, 3) and (gray == 7).all()
    with pytest.raises(ValueError, match="HxWx3 uint8 RGB"):
        to_rapidocr(np.zeros((4, 5, 4), np.uint8))
    assert rapidocr_engine() is rapidocr_engine()  # built once per process


def test_shard_side_info_eval_and_pyfunc_path(image, expected, tmp_path):
    """pipeline.sample_words.ocr_words: shards with ocr=auto, eval.ocr=auto, the pyfunc."""
    from pipeline.sample_words import ocr_words
    from pipeline.samples import SampleSpec, process_sample
    from pipeline.sources import list_source
    from textboost.config import SourceConfig

    assert ocr_words(image) == expected
    folder = tmp_path / "imgs"
    folder.mkdir()
    image.save(folder / "sign.png")
    (ref,) = list_source(SourceConfig(kind="folder", images=str(folder), ocr="auto"))
    sample = process_sample(ref, SampleSpec(threshold=800.0))
    assert json.loads(sample["meta.json"])["words"]["input"] == len(expected)


def test_render_job(image, expected):
    from jobs.render import read_words

    args = argparse.Namespace(ocr="rapidocr", image_id=None, image="x.png")
    assert read_words(args, image) == expected


def test_synth_ocr_check(image, expected):
    from jobs.synth import ocr_read_counts

    legible = [(w, 40.0) for w in expected if w.text in ("Paris", "Metro")]
    counts = ocr_read_counts([(image, legible)])
    assert counts[">30 px"] == [2, 2]  # swapped channels read one "Paris Metro" line: 0/2


def test_evaluation_spotter(image):
    from textboost.scoring.spotting import get_spotter

    spotter = get_spotter()
    kwargs = dict(return_word_box=True, text_score=0.5, box_thresh=0.5, unclip_ratio=1.6)
    own, _ = spotter._engine(image, **kwargs)  # the engine's own PIL -> BGR conversion
    lines = spotter.lines(image)
    assert [(line[1], line[2]) for line in lines] == [(r[1], r[2]) for r in own]
    swapped, _ = spotter._engine(np.asarray(image), **kwargs)
    assert [(r[1], r[2]) for r in swapped] != [(r[1], r[2]) for r in own]
