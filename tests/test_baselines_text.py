"""The paper's comparison models (``model.kind``): ROI (paper 5.2.5) and TACO-style.

Both read the sent words in the encoder only: the ROI model as a 4th input channel (the
filled word polygons), the TACO-style model through a text adapter in ``g_a``. Their
containers hold the backbone strings alone and their decoder never reads text.
"""

from __future__ import annotations

import inspect
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from textboost.codec import container
from textboost.codec.image_codec import decode_full, encode_image, image_to_tensor
from textboost.config import ModelConfig, load_config
from textboost.errors import ConfigError, ContainerError
from textboost.model import build_model
from textboost.model.losses import RateDistortionLoss
from textboost.model.train_steps import prepare_stage, train_step, with_fusion
from textboost.text.words import Word

torch.set_num_threads(1)

TINY = dict(backbone="hyperprior", N=32, M=32)


def scene(width: int = 128, height: int = 96):
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((height, width, 3)) * 200).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    words = []
    for i, text in enumerate(["EXIT", "open", "No7"]):
        x0, y0 = 8 + 30 * i, 10 + 25 * i
        draw.text((x0 + 2, y0 + 2), text, fill=(255, 255, 255))
        words.append(Word(((x0, y0), (x0 + 28, y0), (x0 + 28, y0 + 16), (x0, y0 + 16)), text))
    return image, words


def baseline(kind: str, seed: int = 0, trained: bool = True):
    """A baseline initialised from a TextBoost model (as from zoo:hp-low), its new weights
    perturbed like a trained model's (they start at zero)."""
    torch.manual_seed(seed)
    init = build_model(ModelConfig(**TINY)).eval()
    model = with_fusion(init, ModelConfig(**TINY, kind=kind)).eval()
    if trained:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            if kind == "roi":
                w = model.backbone.g_a[0].weight
                w[:, 3:] = torch.randn(w[:, 3:].shape, generator=gen)
            else:
                w = model.text_adapter.out.weight
                w.copy_(torch.randn(w.shape, generator=gen) * 0.5)
    return init, model


def latents(model, x, **enc):
    """``y`` of the backbone's encoder for ``x`` and the encoder inputs ``enc``."""
    seen = {}
    handle = model.backbone.g_a.register_forward_hook(lambda m, i, o: seen.setdefault("y", o))
    try:
        with torch.no_grad():
            model(x, **enc)
    finally:
        handle.remove()
    return seen["y"]


# ---------------------------------------------------------------- ROI


def test_roi_mask_reaches_the_encoder_and_changes_the_latents():
    _, model = baseline("roi")
    x = torch.rand(1, 3, 64, 64)
    a, b = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    b[..., 10:30, 5:50] = 1
    assert model.backbone.g_a[0].in_channels == 4
    assert not torch.equal(latents(model, x, roi_mask=a), latents(model, x, roi_mask=b))
    assert torch.equal(latents(model, x, roi_mask=a), latents(model, x))  # None: no words


def test_baselines_start_as_exactly_the_init_backbone():
    """Zero weights on the mask channel / a zero adapter projection: the init model's output."""
    image, words = scene()
    x = image_to_tensor(image)
    mask = torch.zeros(1, 1, *x.shape[-2:])
    mask[..., 10:40, 8:70] = 1
    for kind in ("roi", "taco_style"):
        init, model = baseline(kind, trained=False)
        enc = {"roi_mask": mask} if kind == "roi" else {}
        if kind == "taco_style":
            from textboost.model.text_adapter import tokens_for_image

            enc = {"text": tokens_for_image(words, *x.shape[-2:])}
        with torch.no_grad():
            assert torch.equal(model(x, **enc)["x_hat"], init(x)["x_base"]), kind
        assert model.identity() != init.identity()


def test_roi_weight_weights_the_distortion_inside_the_mask():
    x = torch.zeros(1, 3, 8, 8)
    x_hat = torch.zeros(1, 3, 8, 8)
    x_hat[..., :4, :] = 0.1  # error inside the mask only
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1
    out = {"x_hat": x_hat, "likelihoods": {"y": torch.ones(1, 1, 1, 1)}}
    plain = RateDistortionLoss(1.0, 1.0)(out, x, mask)
    roi = RateDistortionLoss(1.0, 4.0)(out, x, mask)
    assert torch.isclose(roi["loss"], 4 * plain["loss"])
    assert torch.equal(roi["mse_loss"], plain["mse_loss"])  # reported MSE stays plain
    x_hat2 = torch.zeros(1, 3, 8, 8)
    x_hat2[..., 4:, :] = 0.1  # error outside the mask: weight 1
    out2 = {"x_hat": x_hat2, "likelihoods": out["likelihoods"]}
    assert torch.isclose(RateDistortionLoss(1.0, 4.0)(out2, x, mask)["loss"], plain["loss"])
    # the ROI model's stage-1 criterion carries train.roi_weight; other kinds ignore it
    _, model = baseline("roi")
    assert prepare_stage(model, 1, 1e-4, 1e-3, 1e-2, roi_weight=3.0)[2].roi_weight == 3.0
    init = build_model(ModelConfig(**TINY))
    assert prepare_stage(init, 1, 1e-4, 1e-3, 1e-2, roi_weight=3.0)[2].roi_weight == 1.0


def test_train_step_feeds_the_mask_or_the_words_to_the_encoder():
    from pipeline.crops import collate, random_crop, to_float

    image, words = scene(160, 160)
    arr = np.asarray(image)
    for kind in ("roi", "taco_style"):
        _, model = baseline(kind)
        crops = [
            random_crop(arr, np.zeros(arr.shape[:2], np.uint8), words, 64, random.Random(s),
                        with_mask=True, with_text=kind == "taco_style", text_prob=1.0)
            for s in range(2)
        ]  # fmt: skip
        batch = to_float(collate(crops, 0, 0), "cpu")
        seen: list = []
        hook = model.backbone.g_a.register_forward_pre_hook(
            lambda m, i, seen=seen: seen.append(i[0])
        )
        opt, aux, crit = prepare_stage(model, 1, 1e-4, 1e-3, 1e-2)
        train_step(model, crit, opt, aux, batch["image"], batch["guidance"],
                   batch["text_mask"], text=batch.get("text"))  # fmt: skip
        hook.remove()
        if kind == "roi":
            assert seen[0].shape[1] == 4 and torch.equal(seen[0][:, 3:], batch["text_mask"])
            assert batch["text_mask"].sum() > 0
        else:
            assert batch["text"]["valid"].any()
            assert batch["text"]["chars"].shape[-1] > 0


# ---------------------------------------------------------------- TACO-style


def test_taco_text_changes_the_latents():
    from textboost.model.text_adapter import tokens_for_image

    _, model = baseline("taco_style")
    image, words = scene()
    x = image_to_tensor(image)
    h, w = x.shape[-2:]
    with_words = latents(model, x, text=tokens_for_image(words, h, w))
    other = [Word(wd.polygon, "zzz") for wd in words]
    assert not torch.equal(with_words, latents(model, x))
    assert not torch.equal(with_words, latents(model, x, text=tokens_for_image(other, h, w)))


def test_taco_decoder_never_reads_text():
    _, model = baseline("taco_style")
    image, words = scene()
    data = encode_image(model, image, words)
    c = container.unpack(data)
    assert decode_full(model, data).words == []  # nothing but the backbone strings is sent
    assert c.side_info == encode_side_info_empty(image)
    plain = decode_full(model, data).image
    # the same latents with the words at hand (in the side-info block): identical decoding
    from textboost.text.side_info import encode_side_info

    c.side_info = encode_side_info(words, image.size)
    with_words = decode_full(model, container.pack(c)).image
    assert np.array_equal(np.asarray(plain), np.asarray(with_words))
    # the decoder API has no text input
    params = set(inspect.signature(model.decompress).parameters)
    assert not params & {"text", "roi_mask", "words", "tokens"}
    assert not set(inspect.signature(model._decode_base).parameters) - {"strings", "shape"}
    # text does change the bitstream (the encoder reads it)
    assert encode_image(model, image, words) != encode_image(model, image, [])


def encode_side_info_empty(image):
    from textboost.text.side_info import encode_side_info

    return encode_side_info([], image.size)


def test_baseline_containers_are_refused_by_other_models():
    image, words = scene()
    init, roi = baseline("roi")
    _, taco = baseline("taco_style")
    for model in (roi, taco):
        data = encode_image(model, image, words)
        decode_full(model, data)  # its own model decodes it
        others = [m for m in (init, roi, taco) if m is not model]
        for other in others:
            with pytest.raises(ContainerError, match="encoded with model"):
                decode_full(other, data)


# ---------------------------------------------------------------- configuration


def test_config_validation_of_the_new_keys():
    with pytest.raises(ConfigError) as exc:
        load_config(overrides=["model.kind=elic_roi"])
    assert "model.kind" in str(exc.value) and "\n" not in str(exc.value)
    for bad, key in (
        (["model.text_encoder=bert"], "model.text_encoder"),
        (["model.kind=taco_style", "model.text_encoder=clip"], "model.clip_weights"),
        (["model.text_encoder=clip", "model.clip_weights=/x.pt"], "model.kind=taco_style"),
        (["model.kind=roi", "model.fusion=colour"], "no fusion block"),
        (["model.kind=roi", "model.backbone=tcm", "model.M=320"], "supports backbone=hyperprior"),
        (["model.kind=roi", "train.stage=2"], "stage 1 only"),
        (["train.roi_weight=0"], "train.roi_weight"),
        (["model.kind=taco_style", "model.text_dim=10"], "model.text_dim"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_config(overrides=bad)
    cfg = load_config(overrides=["model.kind=roi"])
    assert cfg.model.kind == "roi" and cfg.train.roi_weight == 4.0
    assert load_config().model.kind == "textboost"


def test_clip_text_encoder_needs_local_weights_and_open_clip(tmp_path):
    cfg = ModelConfig(**TINY, kind="taco_style", text_encoder="clip",
                      clip_weights=str(tmp_path / "missing.bin"))  # fmt: skip
    with pytest.raises(ConfigError, match="does not exist"):
        build_model(cfg)
    weights = tmp_path / "clip.bin"
    weights.write_bytes(b"x")
    try:
        import open_clip  # noqa: F401
    except ImportError:
        cfg.clip_weights = str(weights)
        with pytest.raises(ConfigError, match="open_clip"):
            build_model(cfg)


def test_pipeline_refuses_stage2_for_a_baseline_and_evaluates_stage1():
    from pipeline.end_to_end import final_stage, stage_configs

    cfg = load_config("configs/zoo/roi-xlow.yaml")
    assert "stage2" not in cfg.pipeline.stages and final_stage(cfg) == "stage1"
    stage_configs(cfg)
    bad = load_config("configs/zoo/roi-xlow.yaml", ["pipeline.stages=[data,shards,stage1,stage2]"])
    with pytest.raises(ConfigError, match="no stage 2"):
        stage_configs(bad)
    for name in ("roi-low", "taco-xlow", "taco-low"):
        c = load_config(f"configs/zoo/{name}.yaml")
        assert c.train.init_checkpoint == "zoo:hp-low" and c.model.kind in ("roi", "taco_style")
        assert c.mlflow.registered_model == f"textboost-zoo-{name}"
        stage_configs(c)


def test_textboost_models_keep_their_identity():
    """The new model keys are hashed only when set: every shipped zoo model (made before
    them) still loads with the identity of its card."""
    from textboost import zoo
    from textboost.model.checkpoint import load_checkpoint

    for name in zoo.names():
        model, _ = load_checkpoint(f"zoo:{name}")
        assert model.kind == "textboost"
        assert model.identity() == zoo.card(name)["model_identity"]
