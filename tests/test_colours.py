"""Colour side info, the colour guidance map, the colour fusion block and stage 2 around it."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from pipeline.crops import collate, random_crop, text_share
from textboost.codec import container
from textboost.codec.image_codec import decode_container, encode_image, fusion_inputs
from textboost.config import ModelConfig
from textboost.errors import ContainerError
from textboost.model import build_model
from textboost.model.losses import GuidanceTargetLoss, legibility_weight
from textboost.model.train_steps import prepare_stage, train_step, with_fusion
from textboost.text import colours
from textboost.text.words import Word

torch.set_num_threads(1)
TEXT, BG = (200, 30, 40), (20, 90, 160)


def _word_image(w: int = 160, h: int = 96) -> tuple[np.ndarray, Word]:
    """A flat background with one word drawn in a known colour, and its box."""
    im = Image.new("RGB", (w, h), BG)
    ImageDraw.Draw(im).text((40, 36), "SALE 42", fill=TEXT, font_size=20)
    return np.asarray(im), Word(((36, 32), (124, 32), (124, 62), (36, 62)), "SALE42")


def _colour_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(backbone="hyperprior", N=8, M=8, fusion="colour")).eval()


def test_word_colours_separates_text_from_background():
    image, word = _word_image()
    (row,) = colours.word_colours(image, [word])
    assert np.abs(row[3:].astype(int) - BG).max() <= 6  # the box border is background
    assert np.abs(row[:3].astype(int) - TEXT).max() <= 40  # antialiased glyph pixels blend in


def test_colour_guidance_paints_glyphs_in_text_colour_inside_the_box_only():
    g = np.zeros((40, 60), np.uint8)
    g[10:20, 10:30] = 255
    word = Word(((5, 5), (40, 5), (40, 30), (5, 30)), "ab")
    table = np.array([[250, 0, 0, 0, 0, 250]], np.uint8)
    cmap, box = colours.colour_guidance(g, [word], table)
    assert tuple(cmap[15, 15]) == (250, 0, 0) and tuple(cmap[25, 25]) == (0, 0, 250)
    assert box[25, 25] == 1 and box[35, 50] == 0 and not cmap[35, 50].any()
    # the window offset shifts the words into the crop's coordinates
    shifted, box2 = colours.colour_guidance(g[5:, 5:], [word], table, offset=(5, 5))
    assert np.array_equal(shifted, cmap[5:, 5:]) and np.array_equal(box2, box[5:, 5:])


def test_container_v2_carries_colours_counted_as_side_info():
    c = container.Container("00" * 8, 64, 64, (0, 0, 0, 0), b"side", [[b"a"], [b"b"]])
    plain = container.pack(c)
    assert plain[3] == container.FORMAT_VERSION
    c.colours = bytes(range(12))
    data = container.pack(c)
    assert data[3] == container.COLOUR_VERSION and container.unpack(data).colours == c.colours
    d = container.describe(data)
    assert d["colour_bytes"] == 12 and d["side_info_bytes"] == 4 + 12
    assert d["bpp_total"] == 8 * len(data) / (64 * 64)
    with pytest.raises(ContainerError, match="colour block holds"):
        colours.unpack(c.colours, 3)


def test_colour_codec_roundtrip_matches_forward_and_degrades_to_backbone():
    image, word = _word_image(192, 128)
    model = _colour_model()
    torch.nn.init.normal_(model.fusion_block.head.weight, std=0.2)
    pil = Image.fromarray(image)
    data = encode_image(model, pil, [word])
    c = container.unpack(data)
    assert len(c.colours) == colours.BYTES_PER_WORD
    decoded = np.asarray(decode_container(model, data)).astype(int)
    inputs = fusion_inputs(model, [word], c.colours, 128, 192)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = model(x, **inputs)
    ref = out["x_hat"][0].clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy().astype(int)
    assert np.abs(decoded - ref).max() <= 1
    base = out["x_base"][0].clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy().astype(int)
    assert np.abs(decoded - base).max() > 10  # the block did change the word
    empty = np.asarray(decode_container(model, encode_image(model, pil, []))).astype(int)
    assert np.abs(empty - base).max() <= 1  # no words: exactly the backbone


def test_crop_sampler_centres_windows_on_sent_words():
    h, w = 600, 800
    image = np.zeros((h, w, 3), np.uint8)
    guide = np.zeros((h, w), np.uint8)
    word = Word(((500, 400), (540, 400), (540, 412), (500, 412)), "tiny")
    guide[402:410, 502:538] = 255
    shares = {}
    for prob in (0.0, 1.0):
        rng = random.Random(0)
        crops = [random_crop(image, guide, [word], 128, rng, True, prob, True) for _ in range(64)]
        shares[prob] = text_share(collate(crops, 0, 0))
    assert shares[1.0] == 1.0
    assert shares[0.0] < 0.2


def test_guidance_target_loss_rewards_drawing_the_sent_glyphs():
    g = torch.zeros(1, 1, 32, 32)
    g[..., 10:14, 8:24] = 1
    box = torch.zeros(1, 1, 32, 32)
    box[..., 6:18, 4:28] = 1
    cmap = box * torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    cmap = cmap + g * (torch.tensor([0.9, 0.8, 0.7]).view(1, 3, 1, 1) - cmap)
    target = torch.full((1, 3, 32, 32), 0.5)
    lk = {"y": torch.full((1, 4, 2, 2), 0.5)}
    loss = GuidanceTargetLoss(0.001, 10.0)
    extra = {"guidance": g, "cmap": cmap, "box": box}
    drawn = loss(
        {"x_hat": torch.where(box.bool(), cmap, target), "likelihoods": lk}, target, box, extra
    )
    blurred = loss({"x_hat": target, "likelihoods": lk}, target, box, extra)
    assert drawn["gc_loss"] == 0 and blurred["gc_loss"] > 0
    w = legibility_weight(g, box)
    assert w[0, 0, 12, 16] == 1 and w[0, 0, 15, 16] == 1 and w[0, 0, 16, 16] == 0


def test_stage2_swaps_in_the_colour_block_on_the_same_backbone_and_trains_only_it():
    torch.manual_seed(0)
    paper = build_model(ModelConfig(backbone="hyperprior", N=8, M=8))
    colour_cfg = ModelConfig(backbone="hyperprior", N=8, M=8, fusion="colour")
    model = with_fusion(paper, colour_cfg)
    assert model.needs_colour
    for (k, a), b in zip(paper.backbone.state_dict().items(), model.backbone.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="only change the fusion block of a checkpoint"):
        with_fusion(paper, ModelConfig(backbone="hyperprior", N=8, M=16, fusion="colour"))
    with pytest.raises(ValueError, match="needs model.fusion=colour"):
        prepare_stage(paper, 2, 1e-3, 1e-3, 0.001, 10.0, "guidance")
    opt, aux, crit = prepare_stage(model, 2, 1e-2, 1e-3, 0.001, 10.0, "guidance")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 3, 64, 64)
    g = torch.zeros(2, 1, 64, 64)
    g[..., 20:30, 10:50] = 1
    box = torch.zeros(2, 1, 64, 64)
    box[..., 16:34, 6:54] = 1
    cmap = (box * 0.2 + g * 0.7).expand(-1, 3, -1, -1)
    train_step(model, crit, opt, aux, x, g, box, cmap=cmap, box=box)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("fusion_block.") for k in changed)


def test_refine_path_post_filters_the_whole_image_and_trains_in_stage2():
    """model.fusion_refine: a global refinement path in the colour block. It starts as the
    identity, changes text-free pixels once trained, keeps the codec round trip exact, and
    leaves the identity of models without it as it was."""
    import hashlib
    import json

    from textboost.config import LATER_MODEL_KEYS, to_dict
    from textboost.errors import ConfigError

    torch.manual_seed(0)
    plain = build_model(ModelConfig(backbone="hyperprior", N=8, M=8, fusion="colour"))
    # the identity as computed before the key existed (config dict without it + parameters)
    before = {k: v for k, v in to_dict(plain.model_cfg).items() if k not in LATER_MODEL_KEYS}
    h = hashlib.sha256(json.dumps(before, sort_keys=True).encode())
    for name, p in sorted(plain.named_parameters()):
        t = p.detach().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    assert plain.identity() == h.hexdigest()[:16]
    cfg = ModelConfig(backbone="hyperprior", N=8, M=8, fusion="colour", fusion_refine=8)
    refined = with_fusion(plain, cfg)
    assert refined.fusion_block.refiner is not None and refined.identity() != plain.identity()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = refined.eval()(x)
    assert torch.equal(out["x_hat"], out["x_base"])  # zero head: a new refiner is the identity
    opt, _, crit = prepare_stage(refined, 2, 1e-2, 1e-3, 0.001, 10.0, "guidance")
    g, box = torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64)
    cmap = torch.zeros(2, 3, 64, 64)
    for _ in range(3):  # text-free crops: only the refiner can lower the MSE
        train_step(refined, crit, opt, None, torch.rand(2, 3, 64, 64), g, box, cmap=cmap, box=box)
    refined.eval()
    with torch.no_grad():
        out = refined(x)
    assert (out["x_hat"] - out["x_base"]).abs().max() > 1e-4  # text-free pixels are refined
    image, word = _word_image(192, 128)
    data = encode_image(refined, Image.fromarray(image), [word])
    c = container.unpack(data)
    inputs = fusion_inputs(refined, [word], c.colours, 128, 192)
    xi = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref = refined(xi, **inputs)["x_hat"][0].clamp(0, 1).mul(255).round()
    decoded = torch.from_numpy(np.asarray(decode_container(refined, data)).copy()).permute(2, 0, 1)
    assert (decoded.float() - ref).abs().max() <= 1
    with pytest.raises(ConfigError, match="fusion_refine needs model.fusion=colour"):
        ModelConfig(backbone="hyperprior", N=8, M=8, fusion_refine=8)
