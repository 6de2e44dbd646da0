"""The model zoo: zoo:NAME resolution, fp16 files, cards, the CLI, lineage of zoo models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from jobs.cli import main
from textboost import zoo
from textboost.config import ModelConfig
from textboost.errors import CheckpointError, TextBoostError, ZooError
from textboost.model import build_model
from textboost.model.checkpoint import load_checkpoint, save_checkpoint

torch.set_num_threads(1)

TINY = ModelConfig(backbone="hyperprior", N=8, M=8)
ROOT = Path(__file__).resolve().parents[1]


def card_fields(bpp: float, **extra) -> dict:
    card = {
        "bpp": bpp, "psnr": 21.5, "ms_ssim": 0.81, "det_f1": 0.4, "e2e_f1": None,
        "config": "configs/zoo/hp-mid.yaml", "data": "tiny random weights (tests)",
        "steps": 0, "wall_time_s": 0.0, "description": "untrained tiny hyperprior",
    }  # fmt: skip
    return {**card, **extra}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> dict:
    """Two tiny models exported into a scratch zoo: ``tiny`` (bpp 0.3) and ``tinier`` (0.1)."""
    root = tmp_path_factory.mktemp("zoo")
    torch.manual_seed(0)
    model = build_model(TINY)
    with torch.no_grad():  # weights that fp16 cannot hold exactly, as after training
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    source = root / "source.pt"
    save_checkpoint(source, model, TINY, {"train": {"lmbda": 0.01}}, "ab" * 32, 1)
    out = root / "weights"
    cards = {
        "tiny": zoo.export(source, "tiny", card_fields(0.3, extra_note="kept"), out_dir=out),
        "tinier": zoo.export(source, "tinier", card_fields(0.1), out_dir=out),
    }
    return {"source": source, "dir": out, "cards": cards}


@pytest.fixture
def zoo_dir(shipped, monkeypatch) -> Path:
    monkeypatch.setenv(zoo.ENV_DIR, str(shipped["dir"]))
    return shipped["dir"]


def test_zoo_uri_loads_the_exported_weights_rounded_through_fp16(shipped, zoo_dir):
    src, _ = load_checkpoint(shipped["source"])
    got, meta = load_checkpoint("zoo:tiny")
    assert meta["path"] == str(zoo_dir / "tiny.pt")
    assert meta["extra"]["zoo"]["name"] == "tiny"
    assert meta["run_config"] == {"train": {"lmbda": 0.01}}  # lineage of the source kept
    src_params, got_params = dict(src.named_parameters()), dict(got.named_parameters())
    assert src_params.keys() == got_params.keys()
    for name, p in got_params.items():
        assert p.dtype == torch.float32, name
        assert torch.equal(p, src_params[name].half().float()), name
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    guidance = torch.zeros(1, 1, 40, 56)
    with torch.no_grad():
        a, b = src(x, guidance)["x_hat"], got(x, guidance)["x_hat"]
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=2e-2), (a - b).abs().max()


def test_zoo_model_identity_is_the_same_on_every_load(shipped, zoo_dir):
    first, _ = load_checkpoint("zoo:tiny")
    second, _ = load_checkpoint("zoo:tiny")
    assert first.identity() == second.identity() == shipped["cards"]["tiny"]["model_identity"]
    source, _ = load_checkpoint(shipped["source"])
    assert first.identity() != source.identity()  # fp16 rounding made another model


def test_zoo_model_decodes_what_another_load_encoded(zoo_dir):
    from textboost.codec.image_codec import decode_container, encode_image

    encoder, _ = load_checkpoint("zoo:tiny")
    decoder, _ = load_checkpoint("zoo:tiny")
    image = Image.new("RGB", (48, 40), (120, 30, 200))
    out = decode_container(decoder, encode_image(encoder, image, []))
    assert out.size == image.size


def test_zoo_file_holds_fp16_parameters_and_a_complete_card(shipped):
    weights = shipped["dir"] / "tiny.pt"
    payload = torch.load(weights, weights_only=True)
    params = {n for n, _ in build_model(TINY).named_parameters()}
    for k, v in payload["state_dict"].items():
        if k in params:
            assert v.dtype == torch.float16, k
    fp32_bytes = sum(4 * v.numel() for k, v in payload["state_dict"].items() if k in params)
    saved = shipped["source"].stat().st_size - weights.stat().st_size  # the CDF tables stay
    assert saved >= 0.45 * fp32_bytes, (saved, fp32_bytes)
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["name"] == "tiny" and card["extra_note"] == "kept"
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card["size_bytes"] == weights.stat().st_size and card["dtype"] == "float16"
    assert card["model_config"]["N"] == 8


def test_unknown_zoo_name_lists_the_available_ones(zoo_dir):
    with pytest.raises(ZooError) as info:
        load_checkpoint("zoo:nope")
    msg = str(info.value)
    assert "nope" in msg and "tiny" in msg and "tinier" in msg and "\n" not in msg
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, TextBoostError)
    with pytest.raises(ZooError, match="available"):
        zoo.card("../tiny")


def test_unknown_zoo_name_is_a_one_line_cli_error(zoo_dir, tmp_path, capsys):
    assert main(["zoo", "show", "nope"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("textboost zoo: error:") and "tiny" in err and "\n" not in err
    container = tmp_path / "x.tbx"
    container.write_bytes(b"TBX")
    assert main(["decompress", str(container), "-o", str(tmp_path / "x.png"),
                 "--model", "zoo:nope"]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "unknown zoo model 'nope'" in err and "tinier" in err and "\n" not in err


def test_zoo_list_json_parses_and_is_sorted_by_bpp(zoo_dir, capsys):
    assert main(["zoo", "list", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cards] == ["tinier", "tiny"]
    for c in cards:
        assert isinstance(c["name"], str) and isinstance(c["bpp"], float)
    assert zoo.list_models() == cards


def test_zoo_list_prints_a_table_and_show_prints_a_card(zoo_dir, capsys):
    assert main(["zoo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "bpp", "PSNR", "MS-SSIM", "DET", "F1", "E2E", "F1",
                                "config"]  # fmt: skip
    assert lines[1].split()[:2] == ["tinier", "0.1000"] and lines[2].split()[0] == "tiny"
    assert "configs/zoo/hp-mid.yaml" in lines[1] and " - " in lines[1]  # e2e_f1 null
    assert main(["zoo", "show", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "description" in out and "untrained tiny hyperprior" in out
    assert main(["zoo", "show", "tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == zoo.card("tiny")


def test_empty_zoo_lists_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(zoo.ENV_DIR, str(tmp_path / "empty"))
    assert zoo.list_models() == []
    assert main(["zoo", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    with pytest.raises(ZooError, match="the zoo is empty"):
        zoo.path("tiny")


def test_cli_export_writes_a_model_that_loads(shipped, tmp_path, monkeypatch, capsys):
    card = tmp_path / "card.json"
    card.write_text(json.dumps(card_fields(0.2)))
    out = tmp_path / "zoo"
    argv = ["zoo", "export", str(shipped["source"]), "mid", "--card", str(card), "--dir", str(out)]
    assert main(argv) == 0
    assert "zoo:mid" in capsys.readouterr().out
    monkeypatch.setenv(zoo.ENV_DIR, str(out))
    model, _ = load_checkpoint("zoo:mid")
    assert model.identity() == zoo.card("mid")["model_identity"]
    assert main(argv) == 1  # exists: --overwrite needed
    assert "overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_export_refuses_big_files_and_incomplete_cards(shipped, tmp_path, monkeypatch):
    out = tmp_path / "zoo"
    with pytest.raises(ZooError, match="lacks ms_ssim"):
        bad = {k: v for k, v in card_fields(0.2).items() if k != "ms_ssim"}
        zoo.export(shipped["source"], "a", bad, out_dir=out)
    with pytest.raises(ZooError, match="bpp must be a finite number"):
        zoo.export(shipped["source"], "a", card_fields(None), out_dir=out)
    with pytest.raises(ZooError, match="must match"):
        zoo.export(shipped["source"], "../a", card_fields(0.2), out_dir=out)
    monkeypatch.setattr(zoo, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ZooError, match="limited to"):
        zoo.export(shipped["source"], "a", card_fields(0.2), out_dir=out)
    assert not list(out.glob("*.pt")) if out.exists() else True


def test_zoo_uri_is_kept_for_workers_and_recorded_for_lineage(shipped, zoo_dir):
    from pipeline.end_to_end import init_identity
    from pipeline.train_checkpoint import init_checkpoint_tags, worker_init_checkpoint

    sha = zoo.sha256("tiny")
    assert sha == shipped["cards"]["tiny"]["sha256"]
    assert worker_init_checkpoint("zoo:tiny") == "zoo:tiny"
    assert worker_init_checkpoint("runs:/abc/checkpoint/model.pt").startswith("runs:/")
    assert worker_init_checkpoint("ckpt/model.pt") == str(Path("ckpt/model.pt").resolve())
    assert init_checkpoint_tags("zoo:tiny") == {
        "textboost.init_checkpoint": "zoo:tiny",
        "textboost.init_zoo_sha256": sha,
    }
    assert init_checkpoint_tags("") == {}
    with pytest.raises(ZooError, match="tinier"):
        init_checkpoint_tags("zoo:nope")  # fails before Ray starts
    assert init_identity("zoo:tiny") == f"zoo:tiny@sha256:{sha}"


def test_evaluated_zoo_model_is_tagged_with_its_sha256(zoo_dir):
    from pipeline.lineage import _zoo_lineage
    from pipeline.registry import version_tags

    summary = {
        "model_meta": {"m0": {"uri": "zoo:tiny", "model_identity": "x", "stage": 1}},
        "means": [{"model": "m0", "method": "textboost", "bpp": 0.3}],
        "eval_fingerprint": "f",
    }
    tags = version_tags(summary, "m0", "run")
    assert tags["textboost.source_checkpoint"] == "zoo:tiny"
    assert tags["textboost.zoo_sha256"] == zoo.sha256("tiny")
    assert _zoo_lineage("zoo:tiny", None) == {
        "name": "tiny", "sha256": None, "sha256_now": zoo.sha256("tiny"),
    }  # fmt: skip


def test_shipped_models_have_complete_cards_and_fit_the_size_budget():
    """Every ``.pt`` shipped in textboost/zoo/weights (none yet is fine) has its card."""
    weights = sorted(zoo.WEIGHTS_DIR.glob("*.pt"))
    total = 0
    for w in weights:
        card_path = w.with_suffix(".json")
        assert card_path.is_file(), f"{w.name} has no model card {card_path.name}"
        card = json.loads(card_path.read_text(encoding="utf-8"))
        missing = [f for f in zoo.REQUIRED_FIELDS if f not in card]
        assert not missing, f"{card_path.name} lacks {missing}"
        assert card["name"] == w.stem
        assert zoo.check_card(card, w.stem)["name"] == w.stem  # types of the metrics
        assert (ROOT / card["config"]).is_file(), f"{card_path.name}: no {card['config']}"
        size = w.stat().st_size
        assert size <= zoo.MAX_FILE_BYTES, f"{w.name} is {size} bytes"
        assert card.get("sha256") == hashlib.sha256(w.read_bytes()).hexdigest(), w.name
        total += size
    assert total <= zoo.MAX_TOTAL_BYTES
    for c in sorted(zoo.WEIGHTS_DIR.glob("*.json")):
        assert c.with_suffix(".pt").is_file(), f"card {c.name} without weights"


def test_zoo_weights_are_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["textboost.zoo"]
    assert "weights/*.pt" in patterns and "weights/*.json" in patterns


def test_compress_sends_words_up_to_the_zoo_cards_operating_threshold(tmp_path, monkeypatch):
    """``textboost compress --model zoo:NAME`` without ``--t`` filters at the card's t_test."""
    from jobs.compress import DEFAULT_T, default_threshold

    monkeypatch.setenv(zoo.ENV_DIR, str(tmp_path / "zoo"))
    ckpt = tmp_path / "m.pt"
    save_checkpoint(str(ckpt), build_model(TINY), TINY)
    zoo.export(str(ckpt), "wide", {**card_fields(0.04), "t_test": 1400.0})
    assert default_threshold("zoo:wide") == 1400.0
    assert default_threshold(str(ckpt)) == DEFAULT_T == 800.0
    for shipped in zoo.list_models():
        assert default_threshold(f"zoo:{shipped['name']}") == shipped.get("t_test", DEFAULT_T)


def test_card_of_a_baseline_pipeline_takes_its_stage1_model_and_its_own_row(tmp_path):
    """The ROI / TACO-style pipelines have no stage 2: ``jobs.zoo_ship`` ships their stage-1
    checkpoint, with the figures of their own evaluation row and the shipped model they
    started from counted in steps and wall time."""
    from pipeline.stage_state import StageState
    from pipeline.zoo_card import build_card

    cfg = tmp_path / "roi.yaml"
    cfg.write_text(
        f"workdir: {tmp_path / 'work'}\nmodel: {{backbone: hyperprior, N: 64, M: 96, kind: roi}}\n"
        "train: {epochs: 1, steps_per_epoch: 5, init_checkpoint: 'zoo:hp-low', roi_weight: 4.0}\n"
        "pipeline: {stages: [data, shards, stage1, evaluate, register]}\n"
    )
    work = str(tmp_path / "work")
    StageState.load(work, "stage1").save(
        status="done", seconds=12.0, outputs={"checkpoint": "/x/stage1.pt", "run_id": "none"}
    )
    rows = [
        {"method": "roi", "model": "m0-roi", "bpp": 0.037, "psnr": 23.1, "ms_ssim": 0.81,
         "det_f1": 0.35, "e2e_f1": 0.22},
        {"method": "original", "model": "-", "det_f1": 0.8, "e2e_f1": 0.76},
    ]  # fmt: skip
    summary = {"models": ["m0-roi"], "means": rows, "images": 40}
    StageState.load(work, "evaluate").save(status="done", outputs={"summary": summary})
    checkpoint, card = build_card(str(cfg), "roi-test")
    assert checkpoint == "/x/stage1.pt"
    assert (card["bpp"], card["e2e_f1"]) == (0.037, 0.22)
    assert card["description"].startswith("ROI baseline") and "x4.0" in card["description"]
    assert not any(line.startswith("stage 2") for line in card["training"])
    parent = zoo.card("hp-low")
    assert card["steps"] == 5 + parent["steps"]
    assert card["wall_time_s"] == round(12.0 + parent["wall_time_s"], 1)
    assert set(card["evaluation"]) == {"original"}


def test_recard_takes_a_reevaluations_figures_and_keeps_the_weights(tmp_path, monkeypatch):
    """``jobs.zoo_ship CONFIG NAME --recard EVAL_DIR``: the card's figures, t_test and select
    come from an evaluation of that very model; another model's evaluation is refused."""
    from jobs.zoo_ship import main as ship

    monkeypatch.setenv(zoo.ENV_DIR, str(tmp_path / "zoo"))
    ckpt = tmp_path / "m.pt"
    save_checkpoint(str(ckpt), build_model(TINY), TINY)
    old = zoo.export(str(ckpt), "re", {**card_fields(0.04), "training": ["kept"]})
    weights = zoo.path("re").read_bytes()
    row = {"bpp": 0.05, "psnr": 26.4, "ms_ssim": 0.87, "det_f1": 0.8, "e2e_f1": 0.77}
    summary = {
        "models": ["re"], "images": 40,
        "model_meta": {"re": {"model_identity": old["model_identity"]}},
        "means": [{"model": "re", "method": "textboost", **row},
                  {"model": "re", "method": "backbone", **row, "det_f1": 0.47}],
    }  # fmt: skip
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "summary.json").write_text(json.dumps(summary))
    config = str(ROOT / "configs/zoo/hp-xlow.yaml")
    assert ship([config, "re", "--recard", str(ev)]) == 0
    card = zoo.card("re")
    assert card["det_f1"] == 0.8 and card["evaluation"]["backbone"]["det_f1"] == 0.47
    assert card["select"] == "legible" and card["t_test"] == 1e9 and card["training"] == ["kept"]
    assert zoo.path("re").read_bytes() == weights and card["sha256"] == old["sha256"]
    summary["model_meta"]["re"]["model_identity"] = "someone-else"
    (ev / "summary.json").write_text(json.dumps(summary))
    assert ship([config, "re", "--recard", str(ev)]) == 2
