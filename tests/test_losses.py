"""Losses (paper Eqs. 6-8) and the two training stages (paper 4.3): freezing, optimizers."""

from __future__ import annotations

import math

import pytest
import torch

from textboost.config import ModelConfig
from textboost.model import build_model
from textboost.model.losses import (
    GuidanceConsistentLoss,
    RateDistortionLoss,
    bpp_from_likelihoods,
    build_loss,
    guidance_consistent_loss,
)
from textboost.model.train_steps import (
    build_stage1_optimizers,
    build_stage2_optimizer,
    freeze_for_stage2,
    prepare_stage,
    train_step,
)

torch.set_num_threads(1)

TINY = ModelConfig(backbone="hyperprior", N=32, M=32)


def _batch(seed: int = 0, b: int = 2, h: int = 64, w: int = 64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, h, w, generator=gen)
    mask = torch.zeros(b, 1, h, w)
    mask[..., 8:24, 8:56] = 1.0
    guidance = mask * (torch.rand(b, 1, h, w, generator=gen) > 0.5)
    return x, guidance, mask


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_bpp_counts_bits_over_original_pixels():
    lk = {"y": torch.full((1, 4, 2, 2), 0.5), "z": {"nested": torch.full((1, 2, 1, 1), 0.25)}}
    # 16 symbols x 1 bit + 2 symbols x 2 bits = 20 bits over 10 pixels
    assert bpp_from_likelihoods(lk, 10).item() == pytest.approx(2.0)


def test_stage1_loss_is_rate_plus_lambda_mse():
    torch.manual_seed(0)
    model = build_model(TINY)
    x, g, mask = _batch()
    out = model(x, g)
    res = RateDistortionLoss(lmbda=0.01)(out, x, mask)
    assert set(res) == {"loss", "bpp_loss", "mse_loss", "gc_loss", "psnr"}
    mse = torch.mean((out["x_hat"] - x) ** 2)
    bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
    assert res["bpp_loss"].item() == pytest.approx((bits / (2 * 64 * 64)).item(), rel=1e-5)
    assert res["loss"].item() == pytest.approx(
        (res["bpp_loss"] + 0.01 * 255**2 * mse).item(), rel=1e-5
    )
    assert res["psnr"].item() == pytest.approx(
        -10 * math.log10(torch.mean((out["x_hat"].clamp(0, 1) - x) ** 2).item()), rel=1e-4
    )
    res["loss"].backward()
    assert model.backbone.g_a[0].weight.grad.abs().sum() > 0  # stage 1 trains the encoder


def test_guidance_consistent_loss_is_masked_mse():
    x = torch.zeros(1, 3, 4, 4)
    x_hat = torch.ones(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    assert guidance_consistent_loss(x_hat, x, mask).item() == 0.0
    mask[..., :2, :] = 1.0  # half the pixels
    assert guidance_consistent_loss(x_hat, x, mask).item() == pytest.approx(0.5)


def test_stage2_loss_holds_rate_constant_and_weights_gc():
    torch.manual_seed(0)
    model = build_model(TINY)
    x, g, mask = _batch()
    out = model(x, g)
    res = GuidanceConsistentLoss(lmbda=0.01, alpha=10.0)(out, x, mask)
    assert not res["bpp_loss"].requires_grad  # bpp̄ is a constant (Eq. 8)
    expected = res["bpp_loss"] + 0.01 * 255**2 * (res["mse_loss"] + 10.0 * res["gc_loss"])
    assert res["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert res["gc_loss"].item() > 0
    assert isinstance(build_loss(2, 0.01), GuidanceConsistentLoss)
    with pytest.raises(ValueError):
        build_loss(3, 0.01)


def test_stage1_optimizers_split_quantiles():
    model = build_model(TINY)
    opt, aux = build_stage1_optimizers(model, lr=1e-4, aux_lr=1e-3)
    main_ids = {id(p) for g in opt.param_groups for p in g["params"]}
    aux_ids = {id(p) for g in aux.param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert main_ids.isdisjoint(aux_ids)
    assert main_ids | aux_ids == set(names)
    assert all(names[i].endswith(".quantiles") for i in aux_ids) and aux_ids


def test_stage1_step_trains_backbone_and_quantiles():
    torch.manual_seed(0)
    model = build_model(TINY)
    opt, aux, crit = prepare_stage(model, 1, lr=1e-3, aux_lr=1e-2, lmbda=0.01)
    before = _snapshot(model)
    x, g, mask = _batch()
    res = train_step(model, crit, opt, aux, x, g, mask)
    assert {"loss", "aux_loss"} <= set(res)
    after = model.state_dict()
    assert not torch.equal(before["backbone.g_a.0.weight"], after["backbone.g_a.0.weight"])
    assert not torch.equal(
        before["backbone.entropy_bottleneck.quantiles"],
        after["backbone.entropy_bottleneck.quantiles"],
    )


def test_stage2_freezes_everything_but_the_fusion_block():
    torch.manual_seed(0)
    model = build_model(TINY)
    # a short stage 1 first, so the backbone is not at its initial state
    opt1, aux1, crit1 = prepare_stage(model, 1, lr=1e-3, aux_lr=1e-2, lmbda=0.01)
    for seed in range(2):
        train_step(model, crit1, opt1, aux1, *_batch(seed))
    opt2 = build_stage2_optimizer(model, lr=1e-3)
    crit2 = build_loss(2, lmbda=0.01, alpha=10.0)
    trainable = {id(p) for g in opt2.param_groups for p in g["params"]}
    assert trainable == {id(p) for p in model.fusion_block.parameters()}
    assert not any(p.requires_grad for p in model.backbone.parameters())

    fixed_x, fixed_g, fixed_mask = _batch(seed=99)
    model.eval()
    with torch.no_grad():
        rate_before = crit2(model(fixed_x, fixed_g), fixed_x, fixed_mask)["bpp_loss"].item()
    backbone_before = _snapshot(model.backbone)
    fusion_before = _snapshot(model.fusion_block)

    losses = [train_step(model, crit2, opt2, None, *_batch(7))["loss"] for _ in range(25)]
    assert model.training and not model.backbone.training  # train() keeps the backbone in eval
    assert all(not m.training for m in model.backbone.modules())

    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, backbone_before[k]), f"frozen tensor {k} changed"
    assert any(
        not torch.equal(v, fusion_before[k]) for k, v in model.fusion_block.state_dict().items()
    )
    model.eval()
    with torch.no_grad():
        rate_after = crit2(model(fixed_x, fixed_g), fixed_x, fixed_mask)["bpp_loss"].item()
    assert rate_after == rate_before  # bit-identical rate on a fixed batch
    assert losses[-1] < losses[0]  # the fusion block learns on its fixed batch


def test_stage2_keeps_zero_guidance_equal_to_backbone_after_training():
    torch.manual_seed(0)
    model = build_model(TINY)
    opt = build_stage2_optimizer(model, lr=1e-2)
    crit = build_loss(2, lmbda=0.01)
    for _ in range(5):
        train_step(model, crit, opt, None, *_batch(3))
    assert model.fusion_block.project.weight.abs().sum() > 0  # it did train
    model.eval()
    x = _batch(4)[0]
    with torch.no_grad():
        out = model(x, torch.zeros(2, 1, 64, 64))
    assert torch.equal(out["x_hat"], out["x_base"])


def test_freeze_accepts_wrapped_model():
    model = build_model(TINY)

    class Wrapper(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    params = freeze_for_stage2(Wrapper(model))
    assert model.backbone_frozen and len(params) == len(list(model.fusion_block.parameters()))
