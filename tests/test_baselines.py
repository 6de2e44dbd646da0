"""AVIF baselines (textboost.codec.baselines, pipeline.eval_image.baseline_rates): deterministic bytes,
matched bpp, the lowest-quality and half-size variants, and the outputs that list them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from textboost.codec import baselines

W, H = 256, 192


@pytest.fixture(scope="module")
def img() -> Image.Image:
    """A 256x192 gradient with noise (even-sized; see the odd-size test for the rounding)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx, yy * 1.3, (xx + yy) / 2], axis=-1)
    noise = rng.normal(0, 12, size=(H, W, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _bpp(data: bytes, pixels: int) -> float:
    return len(data) * 8.0 / pixels


def test_avif_encoding_is_deterministic_and_decodes_to_the_image_size(img):
    a = baselines.encode(img, "avif", 40)
    b = baselines.encode(img.copy(), "avif", 40)
    assert a == b  # same settings, one thread: same bytes
    assert Image.open(io.BytesIO(a)).format == "AVIF"
    decoded = baselines.decode(a)
    assert decoded.size == (W, H) and decoded.mode == "RGB"
    err = np.abs(np.asarray(decoded, np.int16) - np.asarray(img, np.int16)).mean()
    assert err < 20  # a picture of the input, not just any decodable bytes
    # nothing but the image goes in the file: an embedded ICC profile is not copied
    tagged = img.copy()
    tagged.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert baselines.encode(tagged, "avif", 40) == a
    assert len(baselines.encode(img, "avif", 90)) > len(a) > len(baselines.encode(img, "avif", 0))


def test_avif_match_bpp_respects_the_target(img):
    lo, hi = baselines.QUALITY_RANGE["avif"]
    pixels = W * H
    small, big = baselines.encode(img, "avif", lo), baselines.encode(img, "avif", 80)
    target = (len(small) + len(big)) * 4 / pixels  # midway, in bpp
    res = baselines.match_bpp(img, "avif", target)
    assert res.codec == "avif" and not res.exceeded
    assert res.bpp <= target and res.bpp == _bpp(res.data, pixels)
    assert lo < res.quality < hi
    assert res.data == baselines.encode(img, "avif", res.quality)
    # closest without exceeding: the next quality up is above the target (or the same bytes)
    above = baselines.encode(img, "avif", res.quality + 1)
    assert _bpp(above, pixels) > target or above == res.data
    # below the rate floor: the lowest quality, flagged
    floor = baselines.match_bpp(img, "avif", _bpp(small, pixels) / 2)
    assert floor.exceeded and floor.quality == lo and floor.data == small


def test_avif_min_is_the_lowest_quality_whatever_its_bpp(img):
    from pipeline.eval_image import baseline_rates

    target = 0.01  # far below AVIF's floor on this image
    rates, recon, enc = baseline_rates(img, ["avif_min"], target)
    (rate,) = rates
    data = enc["avif_min"].data
    assert data == baselines.encode(img, "avif", 0)
    assert rate["method"] == "avif_min" and rate["quality"] == 0
    assert rate["bpp"] == rate["bpp_image"] == _bpp(data, W * H) > target
    assert rate["bpp_side_info"] == rate["bpp_overhead"] == 0.0
    assert enc["avif_min"].exceeded and recon["avif_min"].size == (W, H)


def test_avif_half_row_counts_every_file_byte_over_the_full_size_pixels(img):
    from pipeline.eval_image import baseline_rates

    half = baselines.half_size(img)
    assert half.size == (W // 2, H // 2)
    # a target that the half-size image reaches at a middle quality when its bits are spread
    # over the full-size pixels (4x as many): counted over the half-size pixels it could not
    target = _bpp(baselines.encode(half, "avif", 60), W * H)
    rates, recon, enc = baseline_rates(img, ["jpeg", "avif_half"], target)
    assert [r["method"] for r in rates] == ["jpeg", "avif_half"]
    rate = rates[1]
    data = enc["avif_half"].data
    assert data == baselines.encode(half, "avif", rate["quality"])  # the half-size file itself
    assert baselines.decode(data).size == (W // 2, H // 2)
    assert rate["bpp"] == rate["bpp_image"] == len(data) * 8 / (W * H)
    assert rate["bpp"] != pytest.approx(len(data) * 8 / (half.width * half.height))
    assert rate["bpp"] <= target and rate["quality"] >= 60 and not enc["avif_half"].exceeded
    # decoded, then upscaled back to the original size with the same filter
    assert recon["avif_half"].size == (W, H)
    up = baselines.decode(data).resize((W, H), baselines.RESAMPLE)
    assert recon["avif_half"].tobytes() == up.tobytes()


def test_half_size_rounds_odd_sizes_up():
    im = Image.new("RGB", (255, 191), (10, 20, 30))
    assert baselines.half_size(im).size == (128, 96)
    m, recon = baselines.image_baseline(im, "avif_half", 1.0)
    assert recon.size == (255, 191) and m.bpp == len(m.data) * 8 / (255 * 191)


def test_config_outputs_and_table_accept_the_avif_methods(img, tmp_path):
    from pipeline.eval_image import baseline_rates
    from pipeline.eval_outputs import METHODS, aggregate, compressai_results, rd_plot
    from pipeline.run_summary import results_table
    from textboost.config import EvalConfig

    new = ["avif", "avif_min", "avif_half"]
    assert EvalConfig().baselines == ["jpeg", "webp", "backbone"]  # default unchanged
    assert EvalConfig(baselines=new, track=False, register=False).baselines == new
    assert all(m in METHODS for m in new)
    rates, _, _ = baseline_rates(img, new, 0.5)
    assert [r["method"] for r in rates] == new
    rows = [{"key": "a", "model": "m0", **r, "psnr": 30.0, "ms_ssim": 0.9} for r in rates]
    means = aggregate(rows)
    for m in new:
        assert compressai_results(means, m, ["m0"])["results"]["bpp"] == [
            next(r["bpp"] for r in rates if r["method"] == m)
        ]
    rd_plot(means, ["m0"], new, str(tmp_path / "rd.png"))
    assert (tmp_path / "rd.png").stat().st_size > 0
    table = results_table({"images": 1, "means": means})
    assert "AVIF (lowest quality)" in table and "AVIF (half size)" in table
