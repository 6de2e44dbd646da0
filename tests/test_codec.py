"""The real codec: image + words -> .tbx bytes -> image, checkpoints, CLI, fuzzing."""

from __future__ import annotations

import contextlib
import io
import random
import signal

import numpy as np
import pytest
import torch
from container_fuzz import mutate
from PIL import Image, ImageDraw, ImageFont

from textboost.codec import container
from textboost.codec.image_codec import (
    decode_container,
    decode_words,
    encode_image,
    guidance_tensor,
    image_to_tensor,
)
from textboost.config import ModelConfig
from textboost.errors import CheckpointError, ContainerError
from textboost.model import build_model
from textboost.model.checkpoint import load_checkpoint, save_checkpoint
from textboost.text.filtering import filter_words
from textboost.text.words import Word

torch.set_num_threads(1)

TINY = ModelConfig(backbone="hyperprior", N=32, M=32)
TINY_ELIC = ModelConfig(backbone="elic", N=32, M=192)


def make_scene(width: int = 96, height: int = 64, size: int = 12, seed: int = 0):
    """Smooth background with small white words; returns (image, words)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.2 * np.sin(xx / 9)], -1)
    image = Image.fromarray((base * 255).astype(np.uint8), "RGB")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=size)
    words = []
    for i, text in enumerate(["EXIT", "open 24h", "No 7"]):
        x = int(rng.integers(2, max(3, width // 3)))
        y = 4 + i * (height - 8) // 3
        draw.text((x, y), text, fill=(255, 255, 255), font=font)
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
        words.append(Word(((x0, y0), (x1, y0), (x1, y1), (x0, y1)), text, True))
    return image, words


@pytest.fixture(scope="module")
def model(trained_like):
    torch.manual_seed(0)
    return trained_like(build_model(TINY)).eval()


@pytest.fixture(scope="module")
def scene():
    image, words = make_scene()
    kept, dropped = filter_words(words, 800.0)
    assert len(kept) == 3 and not dropped
    return image, kept


@pytest.fixture(scope="module")
def encoded(model, scene):
    image, words = scene
    return encode_image(model, image, words)


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail a single decode that takes longer than ``seconds`` (a hang)."""

    def _raise(signum, frame):
        raise TimeoutError(f"decode took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("cfg", [TINY, TINY_ELIC], ids=["hyperprior", "elic"])
def test_round_trip_is_deterministic_and_matches_forward(cfg, scene, trained_like):
    torch.manual_seed(1)
    net = trained_like(build_model(cfg)).eval()
    image, words = scene
    data = encode_image(net, image, words)
    assert encode_image(net, image, words) == data  # same inputs => same bytes
    decoded = decode_container(net, data)
    assert decoded.size == image.size and decoded.mode == "RGB"
    assert np.array_equal(np.asarray(decode_container(net, data)), np.asarray(decoded))

    x = image_to_tensor(image)
    g = guidance_tensor(words, image.height, image.width)
    assert g.max() > 0  # the words render into the guidance map
    with torch.inference_mode():
        ref = net(x, g)["x_hat"].clamp(0, 1)
    ref_img = (ref[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert _psnr(np.asarray(decoded), ref_img) > 45  # only the 8-bit rounding differs


def test_side_info_and_bpp_split(model, scene, encoded):
    image, words = scene
    c = container.unpack(encoded)
    assert c.model_id == model.identity()
    assert (c.width, c.height) == image.size
    decoded_words = decode_words(c)
    assert [w.text for w in decoded_words] == [w.text for w in words]
    for got, want in zip(decoded_words, words):
        assert np.allclose(np.array(got.polygon), np.array(want.polygon), atol=1.0)
    d = container.describe(encoded)
    assert d["side_info_bytes"] > 0 and d["image_bytes"] > 0
    assert d["side_info_bytes"] + d["image_bytes"] + d["overhead_bytes"] == len(encoded)


def test_no_words_decodes_like_the_backbone(model, scene):
    image, _ = scene
    data = encode_image(model, image, [])
    x = image_to_tensor(image)
    with torch.inference_mode():
        enc = model.compress(x)
        base = model.decompress(enc["strings"], enc["shape"], size=(image.height, image.width))
    base_img = (base["x_base"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(decode_container(model, data)), base_img)


def test_other_models_container_is_refused(model, encoded):
    torch.manual_seed(42)
    other = build_model(TINY).eval()
    with pytest.raises(ContainerError, match="encoded with model .* decode it with the checkpoint"):
        decode_container(other, encoded)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_decodes_identically(model, encoded, tmp_path):
    path = tmp_path / "ckpt" / "model.pt"
    ident = save_checkpoint(path, model, TINY, run_cfg={"seed": 0}, manifest_sha="ab" * 32, stage=2)
    loaded, meta = load_checkpoint(path)
    assert ident == loaded.identity() == model.identity() == meta["model_identity"]
    assert meta["stage"] == 2 and meta["manifest_sha256"] == "ab" * 32
    assert meta["run_config"] == {"seed": 0} and meta["model_config"]["backbone"] == "hyperprior"
    assert not loaded.training
    want = np.asarray(decode_container(model, encoded))
    assert np.array_equal(np.asarray(decode_container(loaded, encoded)), want)
    again, _ = load_checkpoint(tmp_path / "ckpt")  # a folder holding model.pt
    assert again.identity() == ident


def test_save_leaves_live_model_untouched(tmp_path):
    torch.manual_seed(3)
    live = build_model(TINY).train()  # never updated: empty CDF tables
    before = {k: v.clone() for k, v in live.state_dict().items()}
    save_checkpoint(tmp_path / "model.pt", live, TINY)
    after = live.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before) and live.training
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    cdf = "backbone.entropy_bottleneck._quantized_cdf"
    assert before[cdf].numel() == 0 and loaded.state_dict()[cdf].numel() > 0
    with pytest.raises(CheckpointError, match="does not describe"):
        save_checkpoint(tmp_path / "x.pt", live, ModelConfig(backbone="hyperprior", N=64, M=32))


def test_checkpoint_fsspec_url(model):
    url = "memory://textboost-test/model.pt"
    save_checkpoint(url, model, TINY)
    loaded, meta = load_checkpoint(url)
    assert loaded.identity() == model.identity() and meta["path"] == url


def test_foreign_and_corrupt_checkpoints(model, tmp_path):
    good = tmp_path / "model.pt"
    save_checkpoint(good, model, TINY)
    raw = good.read_bytes()
    cases = {
        "missing.pt": None,
        "random.pt": random.Random(0).randbytes(5000),
        "truncated.pt": raw[: len(raw) // 2],
    }
    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict()}, buf)  # a plain torch file
    cases["foreign.pt"] = buf.getvalue()
    payload = torch.load(io.BytesIO(raw), weights_only=True)
    payload["state_dict"]["fusion_block.expand.bias"] += 1.0  # tampered weights
    buf = io.BytesIO()
    torch.save(payload, buf)
    cases["tampered.pt"] = buf.getvalue()
    buf = io.BytesIO()
    torch.save({"format": "textboost-checkpoint", "fn": print}, buf)  # pickled code
    cases["code.pt"] = buf.getvalue()
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(CheckpointError):
            load_checkpoint(path)


@pytest.mark.slow  # MLflow sqlite store setup: ~5-15 s
def test_checkpoint_from_mlflow_run_uri(model, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    prev = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        exp = mlflow.create_experiment("codec-test", artifact_location=(tmp_path / "art").as_uri())
        save_checkpoint(tmp_path / "model.pt", model, TINY)
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_artifact(str(tmp_path / "model.pt"), artifact_path="model")
        loaded, _ = load_checkpoint(f"runs:/{run.info.run_id}/model")
        assert loaded.identity() == model.identity()
        with pytest.raises(CheckpointError, match="cannot download"):
            load_checkpoint(f"runs:/{run.info.run_id}/nothing-here")
    finally:
        mlflow.set_tracking_uri(prev)


# --------------------------------------------------------------------------- fuzzing


@pytest.mark.parametrize("fix_crc,n", [(False, 400), (True, 250)], ids=["raw", "crc-fixed"])
def test_fuzz_decode_only_fails_cleanly(model, encoded, fix_crc, n):
    """Damaged containers end in ContainerError or a valid image: no crash, no hang. With the
    checksum recomputed, damage reaches the header checks, side info and entropy decoder."""
    rng = random.Random(7 + n)
    counts = {"error": 0, "image": 0}
    for _ in range(n):
        bad = mutate(encoded, rng, fix_crc)
        with deadline(10.0):
            try:
                img = decode_container(model, bad)
            except ContainerError:
                counts["error"] += 1
                continue
        assert img.size == (96, 64)
        counts["image"] += 1
    assert counts["error"] > n // 3
    if not fix_crc:
        assert counts["image"] == 0


def test_hostile_size_is_refused_before_allocating(model, encoded):
    c = container.unpack(encoded)
    c.width = c.height = container.MAX_SIDE
    c.padding = (0, 0, 0, 0)
    with pytest.raises(ContainerError, match="decode limit"):
        decode_container(model, container.pack(c))


# --------------------------------------------------------------------------- CLI


def test_cli_compress_decompress_with_icdar_annotations(model, scene, tmp_path, capsys):
    from jobs import compress, decompress

    image, words = scene
    image.save(tmp_path / "img_1.png")
    lines = [",".join(f"{int(v)}" for p in w.polygon for v in p) + f",{w.text}" for w in words]
    lines.append("1,1,5,1,5,5,1,5,###")  # illegible: filtered out
    (tmp_path / "gt_img_1.txt").write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, model, TINY)
    out = tmp_path / "img_1.tbx"
    rc = compress.main(
        [
            str(tmp_path / "img_1.png"),
            "-o",
            str(out),
            "--model",
            str(ckpt),
            "--ocr",
            str(tmp_path / "gt_img_1.txt"),
            "--t",
            "800",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "words sent 3/4" in text and "side info" in text and "bpp total" in text
    rc = decompress.main([str(out), "-o", str(tmp_path / "out.png"), "--model", str(ckpt)])
    assert rc == 0
    decoded = Image.open(tmp_path / "out.png")
    assert np.array_equal(
        np.asarray(decoded), np.asarray(decode_container(model, out.read_bytes()))
    )


def test_cli_errors_are_textboost_errors(model, tmp_path):
    from jobs.cli import main as cli

    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, model, TINY)
    (tmp_path / "junk.tbx").write_bytes(b"not a container")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    for command, src, dst in (
        ("decompress", "junk.tbx", "o.png"),
        ("compress", "junk.png", "o.tbx"),
    ):
        argv = [command, str(tmp_path / src), "-o", str(tmp_path / dst), "--model", str(ckpt)]
        assert cli(argv) == 1, command


@pytest.mark.slow  # RapidOCR model load + inference: ~5-12 s
def test_cli_compress_with_rapidocr(model, tmp_path, capsys):
    pytest.importorskip("rapidocr_onnxruntime")
    from jobs import compress

    image, _ = make_scene(width=320, height=128, size=22)
    image.save(tmp_path / "scene.png")
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, model, TINY)
    out = tmp_path / "scene.tbx"
    rc = compress.main(
        [str(tmp_path / "scene.png"), "-o", str(out), "--model", str(ckpt), "--ocr", "auto"]
    )
    assert rc == 0
    words = decode_words(container.unpack(out.read_bytes()))
    assert any("EXIT" in w.text.upper() for w in words), [w.text for w in words]
    assert decode_container(model, out.read_bytes()).size == (320, 128)
