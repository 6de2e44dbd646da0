"""Evaluation on a tiny synthetic TextOCR-format set with a tiny untrained hyperprior model:
real containers, reproducible outputs, baselines, F1, crops, plots (pipeline.evaluation)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from PIL import Image
from tiny_eval_set import eval_config, tiny_set_and_model

from textboost.errors import TextBoostError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return tiny_set_and_model(tmp_path_factory.mktemp("eval"), images=2, seed=7, max_side=256)


def _cfg(data: dict, out, *extra: str):
    return eval_config(data, out, "jpeg,webp,backbone", *extra)


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def twice(data) -> tuple:
    from pipeline.evaluation import run_evaluation

    a = run_evaluation(_cfg(data, str(data["root"] / "out_a")))
    b = run_evaluation(_cfg(data, str(data["root"] / "out_b")))
    return a, b


def test_two_runs_give_identical_results(data, twice):
    a_dir, b_dir = data["root"] / "out_a", data["root"] / "out_b"
    for rel in ["per_image.csv", "summary.csv", "rejected.jsonl"] + [
        f"results/{m}.json" for m in ("textboost", "backbone", "jpeg", "webp")
    ]:
        assert (a_dir / rel).read_bytes() == (b_dir / rel).read_bytes(), rel
    crops = sorted(p.name for p in (a_dir / "crops").iterdir())
    assert len(crops) == 1
    assert (a_dir / "crops" / crops[0]).read_bytes() == (b_dir / "crops" / crops[0]).read_bytes()
    assert twice[0]["means"] == twice[1]["means"]


def test_results_schema_and_rates_come_from_real_containers(data, twice):
    from textboost.codec import container
    from textboost.codec.image_codec import encode_image
    from textboost.model.checkpoint import load_checkpoint
    from textboost.text.filtering import filter_words
    from textboost.text.ocr import read_textocr

    out = data["root"] / "out_a"
    res = json.loads((out / "results" / "textboost.json").read_text())
    assert res["name"] == "TextBoost" and res["models"] == ["m0"]
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "det_f1", "e2e_f1"):
        assert len(res["results"][key]) == 1 and isinstance(res["results"][key][0], float)
    assert res["results"]["lpips"] == [None]  # no LPIPS weights on this machine: never a number
    assert twice[0]["lpips"] == "n/a"

    rows = _rows(out / "per_image.csv")
    assert sorted({r["method"] for r in rows}) == [
        "backbone",
        "jpeg",
        "original",
        "textboost",
        "webp",
    ]
    assert len(rows) == 2 * 5
    # re-encode the first image exactly as the evaluation did: same container bytes -> same bpp
    index = read_textocr(str(data["ann"]))
    image_id = index.image_ids()[0]
    file_name = index.info(image_id).file_name.rsplit("/", 1)[-1]
    image = Image.open(data["images"] / file_name).convert("RGB")
    kept, _ = filter_words(index.words(image_id), 800.0)
    model, _ = load_checkpoint(data["root"] / "model.pt")
    blob = encode_image(model, image, kept, "compact")
    px = image.width * image.height
    key = f"textocr_{image_id}"
    by = {r["method"]: r for r in rows if r["key"] == key}
    assert float(by["textboost"]["bpp"]) == pytest.approx(len(blob) * 8 / px, rel=1e-12)
    side = len(container.unpack(blob).side_info) * 8 / px
    assert float(by["textboost"]["bpp_side_info"]) == pytest.approx(side, rel=1e-12)
    assert kept and float(by["backbone"]["bpp"]) < float(by["textboost"]["bpp"])
    assert float(by["backbone"]["bpp_image"]) == float(by["textboost"]["bpp_image"])  # same strings
    for codec in ("jpeg", "webp"):  # matched to TextBoost's bpp, or the lowest quality if above
        r = by[codec]
        assert float(r["bpp"]) <= float(by["textboost"]["bpp"]) or r["quality"] in ("0", "1")
    for r in rows:
        for k in ("det_f1", "e2e_f1"):
            assert 0.0 <= float(r[k]) <= 1.0
        assert r["lpips"] == ""


def test_summary_counts_and_figures(data, twice):
    summary = twice[0]
    means = {(m["model"], m["method"]): m for m in summary["means"]}
    original = means[("-", "original")]
    per_image = [
        r for r in _rows(data["root"] / "out_a" / "per_image.csv") if r["method"] == "original"
    ]
    assert original["det_tp"] == sum(int(r["det_tp"]) for r in per_image)  # global, not mean of F1
    assert original["n_gt"] > 0 and original["det_f1"] > 0.3  # the originals are readable
    assert summary["images"] == 2 and summary["rejected"] == 0
    png = Image.open(data["root"] / "out_a" / "rd_curves.png")
    assert png.size == (1000, 800)
    crop = next((data["root"] / "out_a" / "crops").iterdir())
    sheet = Image.open(crop)
    # original, JPEG, backbone, TextBoost, guidance map (WebP shown only without JPEG)
    assert sheet.width == 5 * (sheet.height - 14 + 4)


def test_cli_on_a_folder_without_ground_truth_records_rejects(data, capsys):
    from jobs.cli import main

    folder = data["root"] / "folder"
    folder.mkdir()
    for p in sorted(data["images"].iterdir())[:1]:
        shutil.copy(p, folder / p.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cfg_file = data["root"] / "folder.yaml"
    cfg_file.write_text(
        "eval:\n  dataset:\n    kind: folder\n  ocr: auto\n  baselines: [jpeg]\n  crops: 0\n"
        "  track: false\n  register: false\n"
    )
    out = data["root"] / "out_folder"
    rc = main(
        [
            "evaluate", str(cfg_file), f"workdir={data['root']}",
            f"eval.models=[{data['root'] / 'model.pt'}]", f"eval.dataset.images={folder}",
            f"eval.out={out}",
        ]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "TextBoost" in printed and "1 rejected" in printed
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 1 and "broken" in rejected[0]["key"]
    rows = _rows(out / "per_image.csv")
    assert {r["method"] for r in rows} == {"textboost", "jpeg"}
    assert all(r["det_f1"] == "" for r in rows)  # no ground truth: F1 not available


def test_bad_inputs_raise_clear_errors(data):
    from pipeline.evaluation import run_evaluation
    from textboost.errors import CheckpointError, ConfigError

    with pytest.raises(TextBoostError, match="eval.models is empty"):
        run_evaluation(_cfg(data, str(data["root"] / "x"), "eval.models=[]"))
    with pytest.raises(CheckpointError):
        run_evaluation(_cfg(data, str(data["root"] / "x"), "eval.models=[/nonexistent/model.pt]"))
    with pytest.raises(ConfigError, match="eval.baselines"):
        _cfg(data, "x", "eval.baselines=[vtm]")


def test_colour_model_gets_an_overlay_row_at_the_same_bits(data):
    """A colour-fusion model: the overlay baseline decodes the same container (same bpp) and
    differs from both the backbone and TextBoost; the colour bytes count in the side info."""
    from pipeline.evaluation import run_evaluation
    from textboost.config import ModelConfig
    from textboost.model import build_model
    from textboost.model.checkpoint import save_checkpoint

    torch.manual_seed(3)
    mc = ModelConfig(backbone="hyperprior", N=16, M=24, fusion="colour")
    model = build_model(mc)
    torch.nn.init.normal_(model.fusion_block.head.weight, std=0.3)
    save_checkpoint(data["root"] / "colour.pt", model, mc)
    out = data["root"] / "out_colour"
    summary = run_evaluation(
        _cfg(
            data, str(out), f"eval.models=[{data['root'] / 'colour.pt'}]",
            "eval.baselines=[backbone,overlay]",
        )
    )  # fmt: skip
    assert summary["methods"] == ["textboost", "backbone", "overlay"]
    rows = [r for r in _rows(out / "per_image.csv") if r["method"] != "original"]
    by = {(r["key"], r["method"]): r for r in rows}
    for key in {r["key"] for r in rows}:
        tb, ov, bb = by[(key, "textboost")], by[(key, "overlay")], by[(key, "backbone")]
        assert ov["bpp"] == tb["bpp"] and float(tb["bpp"]) > float(bb["bpp"])
        assert float(tb["bpp_side_info"]) > 0
        assert ov["psnr"] != bb["psnr"] and ov["psnr"] != tb["psnr"]


def test_baseline_models_get_their_own_row_at_the_image_bits(data, twice):
    """ROI and TACO-style models: one row each (``roi``, ``taco_style``), no backbone/overlay
    pair, bpp from the real container, which holds no side info (the words stay at the
    encoder), and image metrics and F1 like every method."""
    from pipeline.evaluation import run_evaluation
    from textboost.config import ModelConfig
    from textboost.model.checkpoint import load_checkpoint, save_checkpoint
    from textboost.model.train_steps import with_fusion

    init, _ = load_checkpoint(data["root"] / "model.pt")
    uris = []
    for kind in ("roi", "taco_style"):
        mc = ModelConfig(backbone="hyperprior", N=16, M=24, kind=kind)
        save_checkpoint(data["root"] / f"{kind}.pt", with_fusion(init, mc), mc)
        uris.append(str(data["root"] / f"{kind}.pt"))
    out = data["root"] / "out_baselines"
    summary = run_evaluation(
        _cfg(data, str(out), f"eval.models=[{','.join(uris)}]", "eval.baselines=[backbone,jpeg]")
    )
    assert summary["methods"] == ["roi", "taco_style", "jpeg"]
    rows = [r for r in _rows(out / "per_image.csv") if r["method"] != "original"]
    assert {(r["model"], r["method"]) for r in rows} == {
        ("m0-roi", "roi"), ("m0-roi", "jpeg"), ("m1-taco", "taco_style"), ("m1-taco", "jpeg")
    }  # fmt: skip
    by = {(r["key"], r["method"]): r for r in rows}
    tb_rows = _rows(data["root"] / "out_a" / "per_image.csv")  # the ``twice`` evaluation
    backbone = {r["key"]: r for r in tb_rows if r["method"] == "backbone"}
    for key in {r["key"] for r in rows}:
        roi, taco = by[(key, "roi")], by[(key, "taco_style")]
        for r in (roi, taco):
            bits = float(r["bpp_image"]) + float(r["bpp_side_info"]) + float(r["bpp_overhead"])
            assert float(r["bpp"]) == pytest.approx(bits)
            assert r["psnr"] and r["ms_ssim"] and r["det_f1"] != ""
        # the empty side-info block only, as the backbone row of a TextBoost model: no words
        assert roi["bpp_side_info"] == taco["bpp_side_info"] == backbone[key]["bpp_side_info"]
    labels = json.loads((out / "results" / "taco_style.json").read_text())["name"]
    assert labels == "TACO-style, no CLIP"


def test_one_comparison_thresholds_per_model_shared_rows_and_family_curves(data, monkeypatch):
    """One evaluation over models at different operating points (``eval.model_t_test``) and
    of two backbone families: each model's container carries the words of its own threshold,
    the model-free AVIF floor is computed once per image (the same row under each model), and
    the RD curves split TextBoost / backbone by family."""
    from pipeline import evaluation
    from pipeline.eval_outputs import curves
    from textboost.codec import baselines
    from textboost.config import ConfigError, ModelConfig
    from textboost.model import build_model
    from textboost.model.checkpoint import save_checkpoint

    torch.manual_seed(5)
    mc = ModelConfig(backbone="tcm", N=16, M=40, tcm_slices=5, tcm_window=4)
    save_checkpoint(data["root"] / "tcm.pt", build_model(mc), mc)
    model = data["root"] / "model.pt"
    calls = []
    real = baselines.image_baseline
    monkeypatch.setattr(
        baselines, "image_baseline", lambda im, m, t: calls.append(m) or real(im, m, t)
    )
    out = data["root"] / "out_compare"
    summary = evaluation.run_evaluation(
        _cfg(
            data, str(out), f"eval.models=[{model},{model},{data['root'] / 'tcm.pt'}]",
            "eval.model_t_test=[1e-6,1e9,0]", "eval.baselines=[backbone,avif_min]",
        )
    )  # fmt: skip
    meta = summary["model_meta"]
    assert [meta[m]["t_test"] for m in summary["models"][:2]] == [1e-6, 1e9]
    assert [meta[m]["backbone"] for m in summary["models"]] == ["hyperprior"] * 2 + ["tcm"]
    rows = [r for r in _rows(out / "per_image.csv") if r["method"] != "original"]
    keys = sorted({r["key"] for r in rows})
    assert calls.count("avif_min") == len(keys)  # once per image, not once per model
    by = {(r["key"], r["model"], r["method"]): r for r in rows}
    m0, m1, m2 = summary["models"]
    for key in keys:
        low, high = by[(key, m0, "textboost")], by[(key, m1, "textboost")]
        assert float(low["bpp_side_info"]) < float(high["bpp_side_info"])  # fewer words sent
        floors = [{k: v for k, v in by[(key, m, "avif_min")].items() if k != "model"}
                  for m in (m0, m1, m2)]  # fmt: skip
        assert floors[0] == floors[1] == floors[2]
    drawn = curves(summary["models"], summary["methods"], {m: meta[m]["backbone"] for m in meta})
    assert [(m, on) for m, _, on in drawn if m == "textboost"] == [
        ("textboost", [m0, m1]), ("textboost", [m2])
    ]  # fmt: skip
    assert [on for m, _, on in drawn if m == "avif_min"] == [[m0, m1, m2]]
    with pytest.raises(ConfigError, match="eval.model_t_test has 1 values for 2 eval.models"):
        _cfg(data, "x", f"eval.models=[{model},{model}]", "eval.model_t_test=[5]")
