"""LIC-TCM backbone (``model.backbone=tcm``, textboost.model.tcm): codec round trip, foreign
containers, the channel-wise context model, window attention and the config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from textboost.codec import container
from textboost.codec.image_codec import (
    decode_container,
    decode_full,
    encode_image,
    guarded_strings,
    guidance_tensor,
    image_to_tensor,
    string_symbols,
)
from textboost.config import ModelConfig, load_config
from textboost.errors import ConfigError, ContainerError
from textboost.model import build_model
from textboost.model.padding import padding_for
from textboost.model.tcm import TCM, WindowAttention
from textboost.text.words import Word

torch.set_num_threads(1)

TINY_TCM = ModelConfig(backbone="tcm", N=16, M=40, tcm_slices=5, tcm_window=4)


def _scene(width: int = 96, height: int = 70):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.2 * np.sin(xx / 9)], -1)
    arr = (base * 255 + rng.normal(0, 8, base.shape)).clip(0, 255).astype(np.uint8)
    arr[20:34, 10:60] = 255  # a bright "word"
    words = [Word(((10, 20), (60, 20), (60, 34), (10, 34)), "EXIT", True)]
    return Image.fromarray(arr, "RGB"), words


@pytest.fixture(scope="module")
def net(trained_like):
    torch.manual_seed(0)
    model = trained_like(build_model(TINY_TCM)).eval()
    with torch.no_grad():  # latents spread over many quantisation bins, as after training
        model.backbone.g_a[-1].weight.mul_(40)
    return model


@pytest.fixture(scope="module")
def scene():
    return _scene()


@pytest.fixture(scope="module")
def encoded(net, scene):
    image, words = scene
    return encode_image(net, image, words)


# --------------------------------------------------------------------------- codec


def test_round_trip_is_deterministic_and_matches_eval_forward(net, scene, encoded):
    image, words = scene
    assert encode_image(net, image, words) == encoded  # same inputs => same bytes
    c = container.unpack(encoded)
    assert len(c.strings) == net.num_string_lists == TINY_TCM.tcm_slices + 1
    decoded = decode_full(net, encoded)
    assert decoded.image.size == image.size
    assert np.array_equal(np.asarray(decode_container(net, encoded)), np.asarray(decoded.image))

    x = image_to_tensor(image)
    g = guidance_tensor(words, image.height, image.width)
    with torch.inference_mode():
        out = net(x, g)
    for got, want in ((decoded.image, out["x_hat"]), (decoded.base, out["x_base"])):
        ref = (want[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.int16)
        diff = np.abs(np.asarray(got).astype(np.int16) - ref)
        assert diff.max() <= 1  # only the 8-bit rounding differs

    # the entropy-decoded latents are the eval-mode forward's, bit for bit
    seen = []
    hook = net.backbone.g_s.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        with torch.inference_mode():
            net(x, g)
    finally:
        hook.remove()
    with torch.inference_mode():
        y_hat = net.backbone.decode_latent(c.strings, net.latent_shape(128, 128))
    assert y_hat.shape == seen[0].shape == (1, TINY_TCM.M, 8, 8)
    assert torch.equal(y_hat, seen[0])


def test_compress_layout_matches_latent_shape_and_string_bounds(net):
    with torch.inference_mode():
        out = net.compress(torch.rand(1, 3, 70, 130))
    assert out["padding"] == padding_for(70, 130)
    assert out["shape"] == net.latent_shape(128, 192)
    assert len(out["strings"]) == net.num_string_lists
    # one string per slice: the guard's ceiling is per slice (M / slices channels)
    assert string_symbols(net, 128, 192) == (TINY_TCM.M // TINY_TCM.tcm_slices) * 8 * 12


def test_oversized_slice_string_is_refused(net, encoded):
    c = container.unpack(encoded)
    ph, pw = c.height + c.padding[2] + c.padding[3], c.width + c.padding[0] + c.padding[1]
    ceiling = 8 * string_symbols(net, ph, pw) + 16
    strings = [list(ss) for ss in c.strings]
    strings[0] = [strings[0][0] + b"\0" * (ceiling + 4 - len(strings[0][0]))]
    with pytest.raises(ContainerError, match="more than any valid string"):
        guarded_strings(net, strings, ph, pw)


def test_tcm_container_is_refused_by_other_models(encoded):
    torch.manual_seed(7)
    other_tcm = build_model(TINY_TCM).eval()
    hyperprior = build_model(ModelConfig(backbone="hyperprior", N=16, M=16)).eval()
    for other in (other_tcm, hyperprior):
        with pytest.raises(ContainerError, match="encoded with model"):
            decode_container(other, encoded)
    # even with the hyperprior's identity forged in, the string layout does not fit it
    c = container.unpack(encoded)
    forged = container.pack(
        container.Container(
            hyperprior.identity(), c.width, c.height, c.padding, c.side_info, c.strings
        )
    )
    with pytest.raises(ContainerError, match="latent string lists"):
        decode_container(hyperprior, forged)


def test_backbone_refuses_a_wrong_number_of_string_lists(net, encoded):
    c = container.unpack(encoded)
    with pytest.raises(ValueError, match="string lists"):
        net.backbone.decode_latent(c.strings[1:], net.latent_shape(128, 128))


# --------------------------------------------------------------------------- context model


def test_likelihoods_are_per_slice_and_slices_see_earlier_slices():
    torch.manual_seed(0)
    tcm = TCM(N=16, M=40, num_slices=5, window=4).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = tcm(x)
    lk = out["likelihoods"]
    assert list(lk) == ["y0", "y1", "y2", "y3", "y4", "z"]
    assert all(lk[f"y{i}"].shape == (1, 8, 4, 4) for i in range(5))

    seen: dict[int, torch.Tensor] = {}
    hooks = [
        tcm.cc_mean_transforms[i].register_forward_hook(
            lambda m, a, o, i=i: seen.__setitem__(i, o.detach().clone())
        )
        for i in range(2)
    ]

    z = tcm.h_a(tcm.g_a(x)).detach()  # held fixed: only y's slice 0 moves

    def means(delta: float) -> dict[int, torch.Tensor]:
        shift = tcm.g_a.register_forward_hook(
            lambda m, a, o: torch.cat([o[:, :8] + delta, o[:, 8:]], 1)
        )
        hold = tcm.h_a.register_forward_hook(lambda m, a, o: z)
        with torch.no_grad():
            tcm(x)
        shift.remove(), hold.remove()
        return dict(seen)

    base, moved = means(0.0), means(3.0)  # slice 0 of y moved by 3 quantisation steps
    for h in hooks:
        h.remove()
    assert torch.equal(base[0], moved[0])  # slice 0 only sees the hyperprior (same z_hat)
    assert not torch.allclose(base[1], moved[1])  # slice 1's means depend on slice 0


def test_trains_on_channels_last_batches():
    """The loader's batches are permuted HWC (channels-last); a stride-2 1x1 conv on them
    corrupted the heap in backward (worker crash in the pipeline) unless made contiguous."""
    torch.manual_seed(0)
    tcm = TCM(N=16, M=40, num_slices=5, window=4)
    for _ in range(3):
        x = torch.rand(4, 128, 128, 3).permute(0, 3, 1, 2)
        out = tcm(x)
        loss = out["x_hat"].square().mean() + sum(
            v.log().mean() for v in out["likelihoods"].values()
        )
        loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in tcm.parameters())


# --------------------------------------------------------------------------- attention


@pytest.mark.parametrize("shifted", [False, True], ids=["W-MSA", "SW-MSA"])
def test_window_attention_handles_sides_that_are_not_multiples_of_the_window(shifted):
    torch.manual_seed(0)
    attn = WindowAttention(16, 2, 8, shifted)
    x = torch.randn(2, 13, 21, 16, requires_grad=True)
    out = attn(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_window_attention_masks_its_padding():
    """A partial window (13 x 21 map, window 8) attends over its real tokens only."""
    torch.manual_seed(0)
    dim, heads, ws = 8, 2, 8
    attn = WindowAttention(dim, heads, ws, shifted=False)
    with torch.no_grad():
        attn.relative_position_bias.normal_()
    x = torch.randn(1, 13, 21, dim)
    with torch.no_grad():
        out = attn(x)
        # reference: the bottom-right window holds rows 8..12, cols 16..20 (5 x 5 tokens)
        tok = x[0, 8:13, 16:21].reshape(25, dim)
        local = torch.stack(
            torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij"), -1
        ).reshape(25, 2)
        idx = local[:, 0] * ws + local[:, 1]  # positions inside the 8 x 8 window
        q, k, v = attn.qkv(tok).view(25, 3, heads, dim // heads).permute(1, 2, 0, 3)
        table = attn.relative_position_bias[attn.relative_position_index]  # T x T x heads
        bias = table[idx][:, idx].permute(2, 0, 1)
        w = (q @ k.transpose(-1, -2) / (dim // heads) ** 0.5 + bias).softmax(-1)
        ref = attn.proj((w @ v).transpose(0, 1).reshape(25, dim)).view(5, 5, dim)
    assert torch.allclose(out[0, 8:13, 16:21], ref, atol=1e-5)


# --------------------------------------------------------------------------- config


def test_m_not_divisible_by_the_slices_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["model.backbone=tcm", "model.N=32", "model.M=81"])
    msg = str(info.value)
    assert "\n" not in msg and "model.M=81" in msg and "model.tcm_slices=5" in msg
    ModelConfig(backbone="tcm", N=32, M=80)  # divisible: fine


def test_tcm_keys_need_the_tcm_backbone():
    with pytest.raises(ConfigError, match="model.tcm_window only applies to backbone=tcm"):
        ModelConfig(backbone="hyperprior", N=8, M=8, tcm_window=4)


def test_default_tcm_keys_are_not_hashed_into_identities(monkeypatch):
    """Models from before the TCM keys (the shipped zoo) keep their identity."""
    from textboost.config import hashing as config_mod

    torch.manual_seed(0)
    net = build_model(ModelConfig(backbone="hyperprior", N=8, M=8))
    now = net.identity()
    old_to_dict = config_mod.to_dict  # what identity hashes, through model_key

    def without_tcm_keys(cfg):
        return {k: v for k, v in old_to_dict(cfg).items() if not k.startswith("tcm_")}

    monkeypatch.setattr(config_mod, "to_dict", without_tcm_keys)
    net._identity_cache = None
    assert net.identity() == now


def test_shipped_tcm_configs():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    paper = load_config(root / "paper" / "stage1_tcm_imagenet.yaml")
    elic = load_config(root / "paper" / "stage1_imagenet.yaml")
    assert (paper.model.backbone, paper.model.N, paper.model.M) == ("tcm", 128, 320)
    assert (paper.model.tcm_slices, paper.model.tcm_window) == (5, 8)
    assert paper.shards == elic.shards and paper.data.train == elic.data.train  # same shards
    assert paper.data.filter == elic.data.filter
    assert paper.train.stage == 1 and paper.train.crop_size == elic.train.crop_size
    assert paper.mlflow.registered_model != elic.mlflow.registered_model
    init = {"tcm-xlow": "", "tcm-low": "runs/zoo-tcm-xlow/checkpoints/stage1.pt"}
    for name, lmbda in (("tcm-xlow", 1e-4), ("tcm-low", 3e-4)):
        cfg = load_config(root / "zoo" / f"{name}.yaml")
        # tcm-xlow from scratch; tcm-low fine-tunes its stage-1 backbone at a higher lambda
        assert cfg.model.backbone == "tcm" and cfg.train.init_checkpoint == init[name]
        assert cfg.train.lmbda == pytest.approx(lmbda)
        assert "model.fusion=colour" in cfg.pipeline.stage2
        assert "model.fusion_refine=32" in cfg.pipeline.stage2
