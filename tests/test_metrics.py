"""Image metrics, bpp and the matched-bpp JPEG/WebP baselines (textboost.scoring.metrics, codec.baselines)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from textboost.codec import baselines
from textboost.scoring import metrics

torch.set_num_threads(1)


def _image(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 2, yy * 2, (xx + yy)], axis=-1) % 256
    noise = rng.integers(0, 40, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def test_psnr_known_value_and_identity():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    assert metrics.psnr(a, b) == math.inf
    b[..., 0] = 10  # mse = 100 / 3
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (100 / 3)))
    with pytest.raises(ValueError):
        metrics.psnr(a, np.zeros((8, 9, 3), np.uint8))


def test_msssim_matches_pytorch_msssim_on_large_images():
    from pytorch_msssim import ms_ssim as reference

    a = _image(176, 200)
    b = np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(2)))
    ours = metrics.ms_ssim(a, b)
    ref = float(
        reference(
            torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255,
            torch.from_numpy(b).permute(2, 0, 1)[None].double() / 255,
            data_range=1.0,
        )
    )
    assert ours == pytest.approx(ref, abs=1e-12)
    assert 0.0 < ours < 1.0


def test_msssim_small_images_use_fewer_scales():
    assert metrics.msssim_scales(161) == 5
    assert metrics.msssim_scales(160) == 4
    assert metrics.msssim_scales(50) == 3
    assert metrics.msssim_scales(11) == 1
    assert metrics.msssim_scales(10) == 0
    a = _image(48, 64)
    assert metrics.ms_ssim(a, a) == pytest.approx(1.0)
    sharp = metrics.ms_ssim(a, np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(1))))
    blurry = metrics.ms_ssim(a, np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(4))))
    assert 0.0 < blurry < sharp < 1.0
    assert metrics.ms_ssim(a[:8, :8], a[:8, :8]) is None


def test_bpp_counts_original_pixels():
    assert metrics.bpp(1000, 100, 80) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.bpp(10, 0, 10)


def test_lpips_unavailable_without_local_weights(tmp_path):
    assert metrics.lpips_weight_files(tmp_path) is None
    a = _image(32, 32)
    assert metrics.lpips(a, a, hub_dir=str(tmp_path)) is None


def test_lpips_from_local_weight_files_matches_reference(tmp_path):
    """With weight files in a hub dir (random here: no real ones exist offline) LPIPS runs and
    agrees with the reference implementation when the ``lpips`` package happens to exist."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    torch.save(alexnet().state_dict(), ckpt / metrics.ALEXNET_FILE)
    chans = (64, 192, 384, 256, 256)
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(chans)}
    torch.save(lin, ckpt / metrics.LPIPS_LIN_FILE)
    a = _image(64, 64)
    b = np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(2)))
    assert metrics.lpips(a, a, hub_dir=str(tmp_path)) == pytest.approx(0.0, abs=1e-12)
    d = metrics.lpips(a, b, hub_dir=str(tmp_path))
    assert d is not None and d > 0
    lpips_pkg = pytest.importorskip("lpips")
    ref = lpips_pkg.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    slices = {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3, 8: 4, 9: 4, 10: 5, 11: 5}
    alex = torch.load(ckpt / metrics.ALEXNET_FILE)
    trunk = {}
    for key, value in alex.items():
        if key.startswith("features."):
            idx = int(key.split(".")[1])
            trunk[f"slice{slices[idx]}.{key[len('features.') :]}"] = value
    ref.net.load_state_dict(trunk)
    ref.load_state_dict(lin, strict=False)

    def t(x):
        return torch.from_numpy(x).permute(2, 0, 1)[None].float() / 127.5 - 1

    assert d == pytest.approx(float(ref(t(a), t(b))), rel=1e-4)


# ---------------------------------------------------------------- baselines


@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_matched_bpp_search_does_not_exceed_target(codec: str):
    img = Image.fromarray(_image(128, 160))
    lo = baselines.encode(img, codec, baselines.QUALITY_RANGE[codec][0])
    hi = baselines.encode(img, codec, 90)
    pixels = img.width * img.height
    target = (len(lo) + len(hi)) * 4 / pixels  # midway, in bpp
    res = baselines.match_bpp(img, codec, target)
    assert res.bpp <= target and not res.exceeded
    # the next quality up (if any) would exceed the target: closest without exceeding
    if res.quality < baselines.QUALITY_RANGE[codec][1]:
        above = baselines.encode(img, codec, res.quality + 1)
        assert len(above) * 8 / pixels > target or len(above) == len(res.data)
    decoded = baselines.decode(res.data)
    assert decoded.size == img.size and decoded.mode == "RGB"
    assert res.data == baselines.encode(img, codec, res.quality)  # deterministic bytes
    assert Image.open(io.BytesIO(res.data)).format == codec.upper()


def test_matched_bpp_unreachable_target_uses_lowest_quality_and_says_so():
    img = Image.fromarray(_image(64, 64))
    res = baselines.match_bpp(img, "jpeg", 1e-4)
    assert res.exceeded and res.quality == baselines.QUALITY_RANGE["jpeg"][0]
    assert res.bpp > 1e-4
