"""Encoder-side legibility control (eval.select: legible): per-word strength levels in the
colour block, the decoder's blend, the side info's word order, and the encoder's choice with
a shipped model and the real OCR engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from textboost.codec import container
from textboost.codec.image_codec import decode_full, encode_image, image_to_tensor
from textboost.config import EvalConfig, ModelConfig
from textboost.errors import ConfigError, ContainerError
from textboost.model import build_model
from textboost.text import colours, strength
from textboost.text.side_info import decode_side_info, encode_side_info_ordered
from textboost.text.words import Word

torch.set_num_threads(1)


def _box(x0, y0, x1, y1, text):
    return Word(((x0, y0), (x1, y0), (x1, y1), (x0, y1)), text)


def test_levels_pack_two_bits_a_word_and_a_block_without_them_means_full_strength():
    levels = [1.0, 0.25, 0.7, 0.45, 0.25]
    data = strength.pack_levels(levels)
    assert len(data) == 2 and list(strength.unpack_levels(data, 5)) == pytest.approx(levels)
    assert list(strength.unpack_levels(b"", 3)) == [1.0, 1.0, 1.0]
    with pytest.raises(ContainerError, match="strength block"):
        strength.unpack_levels(data, 9)
    with pytest.raises(ValueError, match="not one of"):
        strength.pack_levels([0.5])
    block = bytes(12)
    assert colours.split_block(block, 2) == (block, b"")
    assert colours.split_block(block + b"\x05", 2) == (block, b"\x05")
    with pytest.raises(ContainerError, match="colour block holds"):
        colours.split_block(block + b"\x05\x05", 2)


def test_ordered_side_info_maps_the_decoders_words_back_to_the_inputs():
    words = [_box(300, 200, 360, 220, "late"), _box(10, 10, 60, 30, "early"),
             _box(100, 90, 150, 110, "mid")]  # fmt: skip
    data, order = encode_side_info_ordered(words, (400, 300))
    decoded = decode_side_info(data)
    assert sorted(order) == [0, 1, 2] and order != [0, 1, 2]  # compact sorts by position
    assert [d.text for d in decoded] == [words[i].text for i in order]


def test_decoder_blends_each_word_at_its_strength_and_the_levels_count_in_bpp():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="hyperprior", N=8, M=8, fusion="colour")).eval()
    torch.nn.init.normal_(model.fusion_block.head.weight, std=0.3)
    im = Image.new("RGB", (192, 128), (20, 90, 160))
    draw = ImageDraw.Draw(im)
    draw.text((12, 20), "LEFT", fill=(230, 230, 30), font_size=18)
    draw.text((120, 80), "RIGHT", fill=(230, 230, 30), font_size=18)
    words = [_box(8, 16, 70, 44, "LEFT"), _box(116, 76, 186, 104, "RIGHT")]
    full = encode_image(model, im, words)
    same = encode_image(model, im, words, levels=[1.0, 1.0])
    half = encode_image(model, im, words, levels=[1.0, 0.25])
    assert same == full  # all full strength: no levels written
    assert len(half) == len(full) + 1  # 2 bits a word, rounded up to a byte, in the bpp
    d_full, d_half = decode_full(model, full), decode_full(model, half)
    with torch.inference_mode():
        x_ref = np.asarray(decode_full(model, encode_image(model, im, [])).image, np.float32)
    a, b = (np.asarray(d.image, np.float32) for d in (d_full, d_half))
    left, right = (slice(0, 64), slice(0, 96)), (slice(64, 128), slice(100, 192))
    assert np.abs(a - x_ref)[left].mean() > 1 and np.abs(a - x_ref)[right].mean() > 1
    assert np.array_equal(a[left], b[left])  # the first word at full strength
    moved, full_move = np.abs(b - x_ref)[right].sum(), np.abs(a - x_ref)[right].sum()
    assert moved == pytest.approx(0.25 * full_move, rel=0.1)  # rounding to 8 bits


def test_eval_select_is_checked():
    assert EvalConfig(select="legible").select == "legible"
    with pytest.raises(ConfigError, match="eval.select"):
        EvalConfig(select="ocr")
    with pytest.raises(ConfigError, match="eval.select_margin"):
        EvalConfig(select="legible", select_margin=4)


def _sign(width: int = 640, height: int = 384) -> tuple[Image.Image, list[Word]]:
    """A photo-like gradient with a big word (any low-rate codec keeps it) and a small one."""
    x = np.linspace(60, 200, width, dtype=np.float32)
    arr = np.stack([np.tile(x, (height, 1))] * 3, -1) * np.array([1.0, 0.9, 0.7])
    im = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    font = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
    draw.text((40, 40), "GARDEN", fill=(10, 10, 10), font=ImageFont.truetype(font, 96))
    small = ImageFont.truetype(font, 13)
    draw.text((60, 300), "bakery", fill=(20, 20, 20), font=small)
    big_box = draw.textbbox((40, 40), "GARDEN", font=ImageFont.truetype(font, 96))
    small_box = draw.textbbox((60, 300), "bakery", font=small)
    big = _box(big_box[0] - 4, big_box[1] - 4, big_box[2] + 4, big_box[3] + 4, "GARDEN")
    return im, [
        big,
        _box(small_box[0] - 2, small_box[1] - 2, small_box[2] + 2, small_box[3] + 2, "bakery"),
    ]


def test_encoder_drops_what_the_decoder_reads_and_sends_the_rest_readable():
    from textboost.codec.legibility import select_legible
    from textboost.model.checkpoint import load_checkpoint
    from textboost.scoring.f1 import match_image
    from textboost.scoring.spotting import get_spotter

    model, _ = load_checkpoint("zoo:hp-xlow")
    spotter = get_spotter()
    image, (big, small) = _sign()
    chosen = select_legible(model, image, [big, small], spotter)
    assert chosen.already_read == [big]  # read from the latents alone: not sent
    assert chosen.words == [small] and chosen.levels[0] in strength.LEVELS
    data = encode_image(model, image, chosen.words, levels=chosen.levels)
    shown = decode_full(model, data).image
    assert match_image([small], spotter.spot(shown)).e2e_tp == 1
    # without the check both words are drawn at full strength: more bytes, lower PSNR here
    plain = encode_image(model, image, [big, small])
    assert len(plain) > len(data)
    ref = image_to_tensor(image)
    err = [float(((image_to_tensor(decode_full(model, d).image) - ref) ** 2).mean())
           for d in (data, plain)]  # fmt: skip
    assert err[0] < err[1]
    assert container.unpack(data).colours  # the sent word's colours (and maybe its level)


def test_cli_compress_uses_the_zoo_cards_selection(tmp_path, capsys):
    """``textboost compress --model zoo:NAME`` takes the card's ``select`` (legible for the
    shipped models); ``--select threshold`` sends every word under T."""
    from jobs import compress
    from textboost import zoo

    if zoo.operating_select("zoo:hp-xlow") != "legible":
        pytest.skip("the shipped hp-xlow card does not select legible words")
    image, words = _sign()
    image.save(tmp_path / "img_1.png")
    lines = [",".join(f"{round(v)}" for p in w.polygon for v in p) + f",{w.text}" for w in words]
    (tmp_path / "gt_img_1.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    common = [str(tmp_path / "img_1.png"), "--model", "zoo:hp-xlow", "--ocr"]
    common.append(str(tmp_path / "gt_img_1.txt"))
    assert compress.main([*common, "-o", str(tmp_path / "a.tbx")]) == 0
    assert "words sent 1/2 (legible: 1 already read" in capsys.readouterr().out
    assert compress.main([*common, "-o", str(tmp_path / "b.tbx"), "--select", "threshold"]) == 0
    assert "words sent 2/2\n" in capsys.readouterr().out


def test_reader_crop_rectifies_a_rotated_word():
    from pipeline.reader_check import CROP_HEIGHT, word_crop

    im = Image.new("RGB", (200, 200), "white")
    quad = ((60, 40), (160, 140), (140, 160), (40, 60))  # 141 x 28 px, rotated 45 degrees
    ImageDraw.Draw(im).polygon(quad, fill="black")
    crop = np.asarray(word_crop(im, quad).convert("L"), dtype=np.float32)
    assert crop.shape[0] == CROP_HEIGHT and crop.shape[1] > 3 * CROP_HEIGHT
    band = crop[CROP_HEIGHT // 2 - 5 : CROP_HEIGHT // 2 + 5, 20:-20]
    assert band.mean() < 30 and crop[:6].mean() > 200  # the word fills the middle band only
