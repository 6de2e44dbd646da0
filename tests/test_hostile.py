"""Hostile input and dead services (issue 16): no crash, no hang, no traceback, no silent damage.

One test (or group) per finding: native crash on short latent strings, config values out of
range, a dead MLflow server, pixel limits, 16-bit images, tracebacks instead of messages, a
same-size tampered shard, a mistyped sqlite path, TextOCR messages, over-long words, ``-o``
equal to the input and PyTorch's ``weights_only`` advice. Commands run through
``jobs.cli.main`` (the one error boundary) unless a crash could take pytest down.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jobs.cli import main as cli
from textboost.codec import container
from textboost.codec import image_codec as codec
from textboost.config import ModelConfig, load_config
from textboost.errors import (
    AnnotationError,
    CheckpointError,
    ConfigError,
    ContainerError,
    ImageError,
    ServiceError,
)
from textboost.model import build_model
from textboost.model.checkpoint import load_checkpoint, save_checkpoint
from textboost.model.padding import padding_for

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
TINY = ModelConfig(backbone="hyperprior", N=8, M=8)
DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hostile") / "model.pt"
    save_checkpoint(path, build_model(TINY), TINY)
    return path


@pytest.fixture(scope="module")
def model(ckpt):
    return load_checkpoint(ckpt)[0]


@pytest.fixture()
def image_file(tmp_path) -> Path:
    path = tmp_path / "img.png"
    Image.new("RGB", (96, 64), (30, 120, 200)).save(path)
    return path


def _err(capsys) -> str:
    """stderr of the last command: one or two lines, never a traceback."""
    err = capsys.readouterr().err.strip()
    assert err and "Traceback" not in err, err
    assert len(err.splitlines()) <= 2, err
    return err


def _container(model, width: int, height: int, strings: list[bytes]) -> bytes:
    from textboost.text.side_info import encode_side_info

    c = container.Container(
        model.identity(), width, height, padding_for(height, width),
        encode_side_info([], (width, height)), [[s] for s in strings],
    )  # fmt: skip
    return container.pack(c)  # a valid checksum: the damage reaches the entropy decoder


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# --------------------------------------------------------------------- 1. native crash


def test_empty_latent_strings_of_a_large_image_are_one_line_errors(model, ckpt, tmp_path):
    """The issue's 35-byte container: empty strings for 1024x768 segfaulted (exit 139)."""
    data = _container(model, 1024, 768, [b""] * model.num_string_lists)
    assert len(data) == 35
    (tmp_path / "empty.tbx").write_bytes(data)
    cmd = [sys.executable, "-m", "jobs.cli", "decompress"]
    out = subprocess.run(
        [*cmd, str(tmp_path / "empty.tbx"), "-o", str(tmp_path / "o.png"), "--model", str(ckpt)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    assert out.stderr.strip().splitlines()[-1].startswith("textboost decompress: error:")
    assert "latent string 0 holds 0 bytes" in out.stderr
    with pytest.raises(ContainerError, match="holds 0 bytes"):
        codec.decode_container(model, (tmp_path / "empty.tbx").read_bytes())
    # 8 bytes pass the floor; the guard words keep the decoder inside its input: a garbage
    # image, no crash (in a subprocess: the fuzz test below, "word8-all" at 1024x768)


def test_fuzzed_hostile_containers_never_kill_or_hang_the_decoder():
    """>= 500 checksum-valid hostile containers (empty, short, random, truncated, flipped,
    extended, oversized strings; damaged colour blocks; both backbones and the colour
    format, 4 image sizes) decoded in one child process: never a signal, never a hang."""
    try:
        out = subprocess.run(
            [sys.executable, str(REPO / "tests" / "container_fuzz.py")],
            capture_output=True, text=True, timeout=240, cwd=REPO,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        last = (exc.stdout or b"").decode(errors="replace").strip().splitlines()[-1:]
        pytest.fail(f"the decoder hung on {last}")
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0, f"exit {out.returncode} on {lines[-1:]}: {out.stderr[-1500:]}"
    summary = json.loads(lines[-1].removeprefix("summary "))
    assert summary["containers"] >= 500
    assert summary["refused"] > 100 and summary["decoded"] > 100  # both paths exercised
    assert {"hyperprior", "colour", "elic"} <= {ln.split()[2] for ln in lines[:-1]}


def test_colour_containers_are_fuzzed_as_format_version_2():
    from container_fuzz import fuzz_models, hostile_corpus

    models = fuzz_models()
    versions = {
        data[3]
        for name, label, data in hostile_corpus(models, quick=True)
        if name == "colour" and "1024x768" not in label and data[:3] == b"TBX"
    }
    assert container.COLOUR_VERSION in versions


@pytest.mark.parametrize(
    "cfg", [TINY, ModelConfig(backbone="elic", N=8, M=136)], ids=["hyperprior", "elic"]
)
def test_guard_words_never_change_a_valid_decode(cfg):
    """A valid string is never read into its guard: decoding is bit-identical with it."""
    torch.manual_seed(2)
    net = build_model(cfg).eval()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (70, 130, 3), dtype=np.uint8), "RGB")
    c = container.unpack(codec.encode_image(net, image, []))
    ph, pw = c.height + c.padding[2] + c.padding[3], c.width + c.padding[0] + c.padding[1]
    shape = net.latent_shape(ph, pw)
    guarded = codec.guarded_strings(net, c.strings, ph, pw)
    assert all(len(g[0]) > len(s[0]) for g, s in zip(guarded, c.strings))
    with torch.inference_mode():
        plain = net.decompress(c.strings, shape, size=(c.height, c.width))["x_hat"]
        safe = net.decompress(guarded, shape, size=(c.height, c.width))["x_hat"]
    assert torch.equal(plain, safe)


def test_guard_covers_every_read_of_the_rans_decoder():
    """A Python port of compressai's decoder, run on the same guarded buffers, counts the
    words read: valid strings are read exactly, hostile ones never past their guard."""
    import random

    from container_fuzz import _scene, fuzz_models, hostile_variants, record

    rng = random.Random(5)
    worst = 0.0
    for name, net in fuzz_models().items():
        if name == "colour":
            continue  # same backbone as "hyperprior"
        log = record(net)
        image, words = _scene(130, 70, 1)
        valid = codec.encode_image(net, image, words)
        log.clear()  # the hyperprior's compress() decodes z once
        codec.decode_container(net, valid)
        written = sorted(len(ss[0]) // 4 for ss in container.unpack(valid).strings)
        assert sorted(e[0] for e in log) == written  # the port reads what the encoder wrote
        for label, data in hostile_variants(valid, rng, 8 if name == "elic" else 40, net):
            log.clear()
            try:
                codec.decode_container(net, data)
            except ContainerError:
                continue
            for reads, buffer_words, _, mismatches in log:
                assert not mismatches, (name, label, mismatches)  # the port is faithful
                assert reads <= buffer_words, (name, label, reads, buffer_words)
                worst = max(worst, reads / buffer_words)
    assert 0.0 < worst < 0.95


def test_strings_below_the_floor_or_above_the_ceiling_are_refused(model):
    ph, pw = 128, 192
    ceiling = codec.RANS_MAX_BYTES_PER_SYMBOL * codec.string_symbols(model, ph, pw) + 16
    for bad, match in ((b"", "holds 0 bytes"), (b"\0" * 9, "whole number"),
                       (b"\0" * (ceiling + 4), "more than any valid string")):  # fmt: skip
        with pytest.raises(ContainerError, match=match):
            codec.guarded_strings(model, [[bad], [b"\0" * 8]], ph, pw)


def test_decompress_child_crash_becomes_one_line(ckpt, tmp_path, monkeypatch, capsys):
    """Defence in depth: a native crash of the decoding child is a one-line error."""
    from jobs import decompress

    crasher = tmp_path / "crash.sh"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(0o755)
    monkeypatch.setattr(decompress.sys, "executable", str(crasher))
    (tmp_path / "x.tbx").write_bytes(b"TBX")
    out = tmp_path / "x.png"
    assert cli(["decompress", str(tmp_path / "x.tbx"), "-o", str(out), "--model", str(ckpt)]) == 1
    err = _err(capsys)
    assert "crashed the decoder (SIGSEGV)" in err and "x.tbx" in err and not out.exists()


# --------------------------------------------------------------------- 2. config ranges


@pytest.mark.parametrize(
    "override,allowed",
    [
        ("train.batch_size=0", ">= 1"),
        ("train.lr=nan", "> 0"),
        ("train.lr=-1e-4", "> 0"),
        ("train.lmbda=0", "> 0"),
        ("train.aux_lr=inf", "> 0"),
        ("train.crop_size=32", "64..4096"),
        ("train.crop_size=100", "multiple of 64"),
        ("train.epochs=0", ">= 1"),
        ("train.num_workers=0", ">= 1"),
        ("train.clip_max_norm=-1", ">= 0"),
        ("data.filter.t_train=-5", "> 0"),
        ("data.filter.t_test=nan", "> 0"),
        ("ray.num_cpus=-2", ">= 0"),
        ("shards.cpus_per_task=nan", "> 0"),
        ("mlflow.bpp_budget=0", "> 0"),
        ("eval.t_test=-1", ">= 0"),
        ("train.text_crop_prob=nan", "0..1"),
        ("seed=-1", ">= 0"),
    ],
)
def test_numeric_config_values_are_checked_with_their_range(override, allowed):
    key = override.split("=", 1)[0]
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    msg = str(info.value)
    assert key in msg and allowed in msg, msg


def test_every_shipped_config_is_valid():
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        load_config(path)


@pytest.mark.timeout(120)
def test_train_with_batch_size_zero_fails_before_ray(tmp_path):
    """Used to spin a rank at 98 % CPU forever (the loader waited for a batch of 0)."""
    cmd = [sys.executable, "-m", "jobs.cli", "train", str(REPO / "configs/quickstart.yaml"),
           "train.batch_size=0", f"workdir={tmp_path}"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert out.returncode == 1
    assert "train.batch_size=0 is out of range; allowed: >= 1" in out.stderr
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "mlflow.db").exists()


# --------------------------------------------------------------------- 3. dead services


@pytest.mark.timeout(60)
def test_dead_mlflow_server_fails_within_seconds_naming_the_uri(tmp_path, capsys):
    start = time.monotonic()
    assert cli(["lineage", "models:/textboost/1", "--tracking-uri", DEAD]) == 1
    err = _err(capsys)
    assert DEAD in err and "not reachable" in err
    assert cli(["registry", "list", str(REPO / "configs/quickstart.yaml"),
                f"mlflow.tracking_uri={DEAD}"]) == 1  # fmt: skip
    err = _err(capsys)
    assert DEAD in err and "not reachable" in err
    assert time.monotonic() - start < 30
    from pipeline.tracking import check_tracking_uri

    with pytest.raises(ServiceError, match="127.0.0.1:9"):
        check_tracking_uri(DEAD)
    assert int(os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 60  # every later request bounded
    assert int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 3


@pytest.mark.timeout(60)
def test_model_uri_through_a_dead_server_fails_within_seconds(image_file, tmp_path, capsys):
    import mlflow

    prev = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(DEAD)
    try:
        start = time.monotonic()
        assert cli(["compress", str(image_file), "-o", str(tmp_path / "o.tbx"),
                    "--model", "models:/textboost/1"]) == 1  # fmt: skip
        assert time.monotonic() - start < 30
    finally:
        mlflow.set_tracking_uri(prev)
    err = _err(capsys)
    assert DEAD in err and "not reachable" in err


def test_server_that_never_answers_times_out(tmp_path):
    import socket

    from pipeline.tracking import probe_server

    with socket.socket() as srv:  # accepts connections, never replies
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        uri = f"http://127.0.0.1:{srv.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(ServiceError, match="no answer within 0.5 s"):
            probe_server(uri, timeout=0.5)
        assert time.monotonic() - start < 5


def test_unknown_tracking_scheme_is_a_clear_error(capsys):
    assert cli(["lineage", "models:/textboost/1", "--tracking-uri", "bogus://x"]) == 1
    err = _err(capsys)
    assert "bogus://x" in err and "unknown scheme" in err and "sqlite:///" in err


def test_mistyped_sqlite_path_creates_no_database(tmp_path, capsys):
    typo = tmp_path / "mflow.db"
    uri = f"sqlite:///{typo}"
    assert cli(["registry", "list", str(REPO / "configs/quickstart.yaml"),
                f"mlflow.tracking_uri={uri}"]) == 1  # fmt: skip
    assert "does not exist" in _err(capsys)
    assert cli(["lineage", "models:/textboost/1", "--tracking-uri", uri]) == 1
    assert str(typo) in _err(capsys)
    assert not typo.exists() and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------- 4. pixel limits


def test_pixel_limit_on_both_sides_from_the_header(ckpt, model, image_file, tmp_path, capsys):
    from jobs import compress, decompress

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(20000, 20000))  # 20000x20000 in a few bytes
    out = tmp_path / "o.tbx"
    assert cli(["compress", str(bomb), "-o", str(out), "--model", str(ckpt)]) == 1
    err = _err(capsys)
    assert "20000x20000" in err and "--max-pixels" in err and "Decompression" not in err
    assert cli(["compress", str(image_file), "-o", str(out), "--model", str(ckpt),
                "--max-pixels", "1000"]) == 1  # fmt: skip
    assert "above the limit of 1000" in _err(capsys) and not out.exists()
    assert cli(["compress", str(image_file), "-o", str(out), "--model", str(ckpt)]) == 0
    capsys.readouterr()
    assert cli(["decompress", str(out), "-o", str(tmp_path / "o.png"), "--model", str(ckpt),
                "--max-pixels", "1000", "--in-process"]) == 1  # fmt: skip
    assert "--max-pixels" in _err(capsys)
    defaults = {mod._parser().get_default("max_pixels") for mod in (compress, decompress)}
    assert defaults == {codec.MAX_DECODE_PIXELS} == {container.MAX_PIXELS}
    with pytest.raises(ImageError, match="above the limit"):
        codec.encode_image(model, Image.new("RGB", (50, 50)), [], max_pixels=2499)
    assert codec.open_image(str(image_file)).size == (96, 64)


# --------------------------------------------------------------------- 5. 16-bit images


def test_16_bit_greyscale_keeps_its_range(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 96).reshape(64, 96).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    x = codec.image_to_tensor(Image.open(path))
    assert abs(float(x.mean()) - 0.5) < 0.01  # was ~1.0: every value clipped to 255
    rgb = np.asarray(codec.open_image(str(path)))
    assert rgb.min() == 0 and rgb.max() == 255
    expected = np.round(ramp / 257.0)
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    wide = Image.fromarray(ramp.astype(np.int32), "I")
    assert np.array_equal(np.asarray(codec.to_rgb8(wide)), rgb)


def test_modes_without_a_defined_range_are_refused():
    with pytest.raises(ImageError, match="mode F"):
        codec.to_rgb8(Image.new("F", (4, 4), 0.5))
    with pytest.raises(ImageError, match="outside 0..65535"):
        codec.to_rgb8(Image.fromarray(np.full((4, 4), 70000, np.int32), "I"))
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 128))
    assert np.asarray(codec.to_rgb8(rgba))[0, 0].tolist() == [10, 20, 30]


# --------------------------------------------------------------------- 6. messages


def test_output_errors_are_one_line(ckpt, image_file, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    cases = {
        str(tmp_path): "is a directory",
        str(tmp_path / "afile" / "o.tbx"): "is a file, not a folder",
    }
    if os.path.exists("/dev/full") and os.access("/dev/full", os.W_OK):
        cases["/dev/full"] = "No space left on device"
    for target, expected in cases.items():
        assert cli(["compress", str(image_file), "-o", target, "--model", str(ckpt)]) == 1
        err = _err(capsys)
        assert expected in err and target in err, err


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"- a\n- b\n", "top level must be a mapping"),
        (b"train: {lr: 1\n", "not valid YAML"),
        (b"train:\n  lr: 1\n  lr: 2\n", "duplicate key lr (line 3"),
        ("workdir: caf\xe9\n".encode("latin-1"), "not UTF-8"),
        (b"42\n", "top level must be a mapping"),
    ],
    ids=["list", "syntax", "duplicate", "latin-1", "scalar"],
)
def test_bad_yaml_configs_are_one_line(content, expected, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(content)
    assert cli(["config", "show", str(cfg)]) == 1
    err = _err(capsys)
    assert expected in err and str(cfg) in err, err
    with pytest.raises(ConfigError):
        load_config(cfg)


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTBOOST_DEBUG", "0")  # restored afterwards (--debug sets it to 1)
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(b"- a\n")
    with pytest.raises(ConfigError):
        cli(["--debug", "config", "show", str(cfg)])


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    import jobs.config

    def boom(argv):
        raise KeyError("surprise")

    monkeypatch.setattr(jobs.config, "main", boom)
    assert cli(["config", "show", "x.yaml"]) == 1
    err = _err(capsys)
    assert "KeyError" in err and "--debug" in err


# --------------------------------------------------------------------- 7. smaller


def test_same_size_tampered_shard_fails_the_rebuild_check(tmp_path, capsys):
    from jobs import shards as shards_job
    from pipeline.shards import build_shards

    out = tmp_path / "shards"
    overrides = [
        f"workdir={tmp_path}", "data.train.kind=synthetic", "data.synth.images=4",
        "data.synth.max_side=128", "data.synth.min_side=96", "data.synth.words_min=1",
        "data.synth.words_max=3", f"shards.out={out}", "shards.samples_per_shard=2",
        "shards.executor=local", "shards.progress=false",
    ]  # fmt: skip
    build_shards(load_config(None, overrides), "train")
    tar = out / "train-000001.tar"
    data = bytearray(tar.read_bytes())
    data[700] ^= 0xFF  # same size, different bytes
    tar.write_bytes(bytes(data))
    capsys.readouterr()
    rebuild = ["rebuild", str(out), "shards.executor=local", "shards.progress=false", "--check"]
    assert shards_job.main([*rebuild, "--into", str(tmp_path / "scratch")]) == 1
    assert "train-000001.tar: rebuilt bytes differ (sha256" in capsys.readouterr().err
    # resuming into the shard folder (or a folder of old shards) would compare nothing new
    assert cli(["shards", *rebuild, "--into", str(out)]) == 1
    assert "shard folder itself" in _err(capsys)
    assert cli(["shards", *rebuild, "--into", str(tmp_path / "scratch")]) == 1
    assert "already holds shards" in _err(capsys)


def test_textocr_json_errors_name_the_file(tmp_path):
    from textboost.text.ocr import read_annotations

    bad = tmp_path / "ann.json"
    bad.write_text('{"imgs": ')
    with pytest.raises(AnnotationError) as info:
        read_annotations(str(bad), "a")
    assert str(bad) in str(info.value) and "<bytes>" not in str(info.value)


def test_overlong_word_names_its_annotation(tmp_path):
    from textboost.text.ocr import read_annotations, read_icdar2015_gt, read_textocr

    doc = {
        "imgs": {"a": {"id": "a", "width": 64, "height": 64, "file_name": "a.jpg"}},
        "anns": {
            "a_1": {"id": "a_1", "image_id": "a", "utf8_string": "ok",
                    "points": [0, 0, 20, 0, 20, 10, 0, 10]},
            "a_2": {"id": "a_2", "image_id": "a", "utf8_string": "\u00e9" * 513,
                    "points": [0, 20, 40, 20, 40, 30, 0, 30]},
        },
        "img2Anns": {"a": ["a_1", "a_2"]},
    }  # fmt: skip
    path = tmp_path / "textocr.json"
    path.write_text(json.dumps(doc))
    index = read_textocr(str(path))
    with pytest.raises(AnnotationError) as info:
        index.words("a")
    msg = str(info.value)
    assert str(path) in msg and "'a_2'" in msg and "1026 UTF-8 bytes" in msg and "1024" in msg
    with pytest.raises(AnnotationError, match="a_2"):
        read_annotations(str(path), "a")
    gt = "0,0,10,0,10,10,0,10," + "x" * 1025 + "\n"
    with pytest.raises(AnnotationError, match="line 1: text is 1025"):
        read_icdar2015_gt(gt, name="gt_a.txt")


def test_output_equal_to_an_input_is_refused(ckpt, model, image_file, tmp_path, capsys):
    before = image_file.read_bytes()
    assert cli(["compress", str(image_file), "-o", str(image_file), "--model", str(ckpt)]) == 1
    assert "input file itself" in _err(capsys) and image_file.read_bytes() == before
    tbx = tmp_path / "x.tbx"
    tbx.write_bytes(codec.encode_image(model, Image.open(image_file), []))
    held = tbx.read_bytes()
    assert cli(["decompress", str(tbx), "-o", str(tbx), "--model", str(ckpt)]) == 1
    assert "input file itself" in _err(capsys) and tbx.read_bytes() == held
    assert cli(["compress", str(image_file), "-o", str(ckpt), "--model", str(ckpt)]) == 1
    assert "input file itself" in _err(capsys)


def test_a_png_as_model_never_relays_weights_only_advice(image_file, tmp_path, capsys):
    assert cli(["compress", str(image_file), "-o", str(tmp_path / "o.tbx"),
                "--model", str(image_file)]) == 1  # fmt: skip
    err = _err(capsys)
    assert "not a TextBoost checkpoint" in err and "weights_only" not in err
    buf = io.BytesIO()
    torch.save({"format": "textboost-checkpoint", "fn": print}, buf)  # pickled code
    code = tmp_path / "code.pt"
    code.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(code)
    assert "weights_only" not in str(info.value) and "refused" in str(info.value)
