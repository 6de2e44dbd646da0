"""TextBoost model: dict contract, padding, fusion block behaviour (paper 4.2)."""

from __future__ import annotations

import pytest
import torch

from textboost.config import ModelConfig
from textboost.errors import ConfigError
from textboost.model import TextBoost, build_model
from textboost.model.fusion import FusionBlock
from textboost.model.padding import crop, pad, padding_for

torch.set_num_threads(1)

TINY = ModelConfig(backbone="hyperprior", N=32, M=32)
TINY_ELIC = ModelConfig(backbone="elic", N=32, M=192)


def _trained_like(model: TextBoost, seed: int = 0) -> TextBoost:
    """Give the zero-initialised last projection non-zero weights (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    w = model.fusion_block.project.weight
    with torch.no_grad():
        w.copy_(torch.randn(w.shape, generator=gen) * 0.1)
    return model


def _guidance(b: int, h: int, w: int) -> torch.Tensor:
    g = torch.zeros(b, 1, h, w)
    g[..., h // 4 : h // 2, w // 4 : 3 * w // 4] = 1.0
    return g


def test_forward_contract_hyperprior():
    torch.manual_seed(0)
    model = build_model(TINY)
    assert isinstance(model, TextBoost)
    x = torch.rand(2, 3, 50, 70)  # not a multiple of 64: padded inside
    out = model(x, _guidance(2, 50, 70))
    assert set(out) == {"x_hat", "x_base", "likelihoods"}
    assert out["x_hat"].shape == out["x_base"].shape == (2, 3, 50, 70)
    assert set(out["likelihoods"]) == {"y", "z"}
    assert out["likelihoods"]["y"].shape == (2, 32, 4, 8)  # padded 64x128 / 16
    assert model.aux_loss().ndim == 0


def test_elic_forward_shape_64():
    torch.manual_seed(0)
    model = build_model(TINY_ELIC)
    out = model(torch.rand(1, 3, 64, 64), _guidance(1, 64, 64))
    assert out["x_hat"].shape == (1, 3, 64, 64)
    assert out["likelihoods"]["y"].shape == (1, 192, 4, 4)
    assert out["likelihoods"]["z"].shape == (1, 32, 1, 1)


def test_elic_config_needs_m_above_128():
    with pytest.raises(ConfigError, match="M must be > 128"):
        ModelConfig(backbone="elic", N=32, M=64)


@pytest.mark.parametrize("h,w", [(64, 64), (50, 70), (1, 129), (200, 3)])
def test_pad_crop_round_trip_with_shared_offsets(h, w):
    x = torch.rand(1, 3, h, w)
    g = torch.rand(1, 1, h, w)
    xp, px = pad(x)
    gp, pg = pad(g, mode="constant")
    assert px == pg == padding_for(h, w)
    assert xp.shape[-2] % 64 == 0 and xp.shape[-1] % 64 == 0
    assert gp.shape[-2:] == xp.shape[-2:]
    assert torch.equal(crop(xp, px), x) and torch.equal(crop(gp, pg), g)
    left, right, top, bottom = px
    assert abs(left - right) <= 1 and abs(top - bottom) <= 1


def test_fresh_fusion_block_is_identity():
    torch.manual_seed(0)
    block = FusionBlock(13)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(block(x, _guidance(1, 32, 32)), x)  # zero-initialised projection


def test_zero_guidance_gives_exactly_the_backbone():
    torch.manual_seed(0)
    model = _trained_like(build_model(TINY))
    x = torch.rand(1, 3, 64, 64)
    for mode in (True, False):
        model.train(mode)
        out = model(x, torch.zeros(1, 1, 64, 64))
        assert torch.equal(out["x_hat"], out["x_base"])
        out = model(x, None)
        assert torch.equal(out["x_hat"], out["x_base"])
    model.eval()
    with_text = model(x, _guidance(1, 64, 64))
    assert not torch.equal(with_text["x_hat"], with_text["x_base"])


def test_ungated_block_changes_text_free_images():
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="hyperprior", N=32, M=32, fusion_gated=False)
    model = _trained_like(build_model(cfg)).eval()
    out = model(torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64))
    assert not torch.equal(out["x_hat"], out["x_base"])


def test_gate_keeps_pixels_far_from_text():
    torch.manual_seed(0)
    block = FusionBlock(13, gated=True, gate_radius=4)
    torch.nn.init.normal_(block.project.weight, std=0.1)
    x = torch.rand(1, 3, 64, 64)
    g = torch.zeros(1, 1, 64, 64)
    g[..., 30:34, 30:34] = 1.0
    y = block(x, g)
    changed = (y != x).any(dim=1)[0]
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert len(rows) > 0
    assert rows.min() >= 26 and rows.max() <= 37 and cols.min() >= 26 and cols.max() <= 37


def test_parameter_groups_partition_the_model():
    model = build_model(TINY)
    groups = model.parameter_groups()
    names = {n for n, _ in model.named_parameters()}
    assert set(groups["backbone"]) | set(groups["fusion"]) == names
    assert not set(groups["backbone"]) & set(groups["fusion"])
    assert all(n.startswith("fusion_block.") for n in groups["fusion"])
    assert sum(p.numel() for p in model.fusion_parameters()) == sum(
        p.numel() for p in model.fusion_block.parameters()
    )
    assert len(model.backbone_parameters()) == len(groups["backbone"])


@pytest.mark.parametrize("cfg", [TINY, TINY_ELIC], ids=["hyperprior", "elic"])
def test_latent_shape_matches_compress(cfg):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    model.ensure_updated()
    with torch.inference_mode():
        out = model.compress(torch.rand(1, 3, 70, 130))
    assert out["padding"] == padding_for(70, 130)
    assert out["shape"] == model.latent_shape(128, 192)
    assert len(out["strings"]) == model.num_string_lists


@pytest.mark.parametrize("cfg", [TINY, TINY_ELIC], ids=["hyperprior", "elic"])
def test_decompress_matches_forward_in_eval(cfg):
    torch.manual_seed(0)
    model = _trained_like(build_model(cfg)).eval()
    x = torch.rand(1, 3, 60, 90)
    g = _guidance(1, 60, 90)
    model.ensure_updated()
    with torch.inference_mode():
        ref = model(x, g)["x_hat"].clamp(0, 1)
        enc = model.compress(x)
        dec = model.decompress(enc["strings"], enc["shape"], g)
    assert dec["x_hat"].shape == (1, 3, 60, 90)
    mse = torch.mean((dec["x_hat"] - ref) ** 2)
    assert mse == 0 or -10 * torch.log10(mse) > 50  # measured: identical (mse == 0)


def test_identity_tracks_weights():
    torch.manual_seed(0)
    a = build_model(TINY)
    b = build_model(TINY)
    b.load_state_dict(a.state_dict())
    assert a.identity() == b.identity() and len(a.identity()) == 16
    with torch.no_grad():
        b.fusion_block.expand.bias.add_(1e-3)
    assert a.identity() != b.identity()  # in-place change is seen (cache invalidated)
    other_cfg = build_model(ModelConfig(backbone="hyperprior", N=32, M=32, fusion_gate_radius=2))
    other_cfg.load_state_dict(a.state_dict())
    assert other_cfg.identity() != a.identity()  # config is part of the identity


@pytest.mark.parametrize("h,w", [(64, 64), (50, 130), (5, 200), (97, 33)])
def test_sparse_inference_equals_dense(h, w):
    torch.manual_seed(0)
    block = FusionBlock(13)
    torch.nn.init.normal_(block.project.weight, std=0.1)
    torch.nn.init.normal_(block.project.bias, std=0.1)
    x = torch.rand(2, 3, h, w)
    g = torch.zeros(2, 1, h, w)
    g[0, :, :3, : w // 3] = 1.0  # touches the top-left border
    g[0, :, h // 2 :, -2:] = 0.5  # right border
    g[1, :, h // 3 : h // 3 + 2, w // 2 : w // 2 + 3] = 1.0  # one small word inside
    with torch.no_grad():
        sparse = block(x, g)
        block.sparse_inference = False
        dense = block(x, g)
    assert torch.allclose(sparse, dense, atol=1e-6, rtol=0)
    assert not torch.equal(sparse, x)


def test_bf16_autocast_leaves_the_entropy_models_and_likelihoods_in_fp32():
    """Under bf16 autocast (CPU here, CUDA alike) the transforms run in bf16 but the entropy
    models get fp32 inputs and compute noise, quantisation and likelihoods in fp32: their
    outputs are float32 and the likelihoods are not bf16-rounded values."""
    from compressai.entropy_models import EntropyModel

    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="hyperprior", N=8, M=8)).train()
    seen = []
    for m in model.modules():
        if isinstance(m, EntropyModel):
            m.register_forward_hook(lambda mod, args, out: seen.append(out))
    x, g = torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, g)
    assert out["x_base"].dtype == torch.bfloat16  # the synthesis transform did run in bf16
    assert len(seen) == 2  # entropy bottleneck (z) and Gaussian conditional (y)
    for values, likelihoods in seen:
        assert values.dtype == likelihoods.dtype == torch.float32
    for lik in out["likelihoods"].values():
        assert lik.dtype == torch.float32
        assert not torch.equal(lik, lik.to(torch.bfloat16).float()), "computed in bf16"
    # fp32 runs are untouched: the same call as compressai's own forward
    with torch.no_grad():
        a, b = model.eval()(x, g), model(x, g)
    assert all(torch.equal(a["likelihoods"][k], b["likelihoods"][k]) for k in a["likelihoods"])
