"""MLflow (real sqlite store): evaluation run, pyfunc codec, registry aliases, registry CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from tiny_eval_set import tiny_set_and_model

from pipeline import pyfunc, registry, tracking
from textboost.config import MlflowConfig, load_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    from pipeline.evaluation import run_evaluation

    made = tiny_set_and_model(tmp_path_factory.mktemp("registry"), images=1, seed=3, max_side=224)
    root = made["root"]
    cfg_file = root / "cfg.yaml"
    cfg_file.write_text(
        f"workdir: {root}\n"
        "mlflow:\n  experiment: test-eval\n  registered_model: tb-test\n  bpp_budget: 10.0\n"
        "eval:\n  baselines: [backbone]\n  crops: 0\n"
        f"  models: [{root / 'model.pt'}]\n"
        f"  dataset:\n    kind: textocr\n    images: {root / 'set' / 'images'}\n"
        f"    annotations: {root / 'set' / 'textocr.json'}\n"
    )
    cfg = load_config(cfg_file)
    summary = run_evaluation(cfg)
    return {"root": root, "cfg": cfg, "cfg_file": cfg_file, "summary": summary}


def test_evaluation_run_logs_metrics_artifacts_and_registers(env):
    from mlflow import MlflowClient

    from textboost.model.checkpoint import load_checkpoint

    cfg, summary = env["cfg"], env["summary"]
    assert cfg.mlflow.tracking_uri.startswith("sqlite:///")
    c = MlflowClient(cfg.mlflow.tracking_uri)
    run = c.get_run(summary["run_id"])
    # artifacts live next to the sqlite database, never in ./mlruns of the current directory
    assert run.info.artifact_uri.startswith((env["root"] / "mlartifacts").resolve().as_uri())
    assert run.data.params["eval.baselines"] == "['backbone']"
    assert "textboost.bpp" in run.data.metrics and "backbone.psnr" in run.data.metrics
    point = next(m for m in summary["means"] if m["method"] == "textboost")
    assert run.data.metrics["textboost.bpp"] == pytest.approx(point["bpp"])
    assert run.data.tags["textboost.lpips"] == "n/a"
    names = {a.path for a in c.list_artifacts(summary["run_id"], "eval")}
    assert {"eval/per_image.csv", "eval/summary.json", "eval/rd_curves.png"} <= names
    (reg,) = summary["registered"]
    assert reg["version"] == "1" and reg["champion"] and reg["reason"] == "no champion yet"
    (v1,) = registry.list_versions(cfg.mlflow)
    assert v1["aliases"] == ["candidate", "champion"] and v1["run_id"] == summary["run_id"]
    assert float(v1["metrics"]["bpp"]) == pytest.approx(point["bpp"])
    mv = c.get_model_version(cfg.mlflow.registered_model, "1")
    assert mv.tags["textboost.eval_fingerprint"] == summary["eval_fingerprint"]
    identity = load_checkpoint(env["root"] / "model.pt")[0].identity()
    assert mv.tags["textboost.model_identity"] == identity


def test_pyfunc_from_alias_decodes_bit_exactly_like_the_cli(env, tmp_path):
    import mlflow.pyfunc

    from jobs.cli import main
    from textboost.model.checkpoint import load_checkpoint
    from textboost.text.ocr import read_textocr

    cfg, root = env["cfg"], env["root"]
    tracking.setup_mlflow(cfg.mlflow)
    uri = f"models:/{cfg.mlflow.registered_model}@candidate"
    index = read_textocr(str(root / "set" / "textocr.json"))
    image_id = index.image_ids()[0]
    image_path = root / "set" / "images" / index.info(image_id).file_name.rsplit("/", 1)[-1]
    tbx, png = tmp_path / "a.tbx", tmp_path / "a.png"
    args = ["--model", uri, "--ocr", str(root / "set" / "textocr.json"), "--image-id", image_id]
    assert main(["compress", str(image_path), "-o", str(tbx), *args]) == 0
    assert main(["decompress", str(tbx), "-o", str(png), "--model", uri]) == 0

    model = mlflow.pyfunc.load_model(uri)
    out = model.predict(
        pd.DataFrame({"container": [tbx.read_bytes()]}), params={"mode": "decompress"}
    )
    assert out["image"][0] == png.read_bytes()  # same pixels, same PNG bytes as the CLI
    words = json.dumps([w.to_json() for w in index.words(image_id)])
    enc = model.predict(
        pd.DataFrame({"image": [image_path.read_bytes()], "words": [words]}),
        params={"mode": "compress"},
    )
    assert enc["container"][0] == tbx.read_bytes()  # same words, same filter: same bytes
    codec = model.unwrap_python_model()
    assert pyfunc.png_bytes(codec.decompress(tbx.read_bytes())) == png.read_bytes()
    local, _ = load_checkpoint(uri)  # the logged model holds model.pt for load_checkpoint
    assert local.identity() == codec.model.identity()
    with pytest.raises(Exception, match="mode"):
        model.predict(pd.DataFrame({"container": [tbx.read_bytes()]}), params={"mode": "x"})


def test_champion_rule():
    cfg = MlflowConfig(champion_metric="e2e_f1", bpp_budget=0.05)

    def tags(f1: float, bpp: float = 0.04, fp: str = "set-a") -> dict:
        return {
            "textboost.metric.e2e_f1": str(f1),
            "textboost.metric.bpp": str(bpp),
            "textboost.eval_fingerprint": fp,
        }

    assert registry.champion_decision(tags(0.3), None, cfg)[0]
    assert registry.champion_decision(tags(0.4), tags(0.3), cfg)[0]
    assert not registry.champion_decision(tags(0.3), tags(0.3), cfg)[0]  # must beat, not tie
    assert not registry.champion_decision(tags(0.2), tags(0.3), cfg)[0]
    over = registry.champion_decision(tags(0.9, bpp=0.06), tags(0.3), cfg)
    assert not over[0] and "bpp_budget" in over[1]
    other = registry.champion_decision(tags(0.9), tags(0.3, fp="set-b"), cfg)
    assert not other[0] and "not comparable" in other[1]
    assert not registry.champion_decision({}, None, cfg)[0]


def test_aliases_move_in_the_real_registry_and_cli(env, capsys):
    import mlflow

    from jobs.cli import main

    cfg = env["cfg"]
    tracking.setup_mlflow(cfg.mlflow)
    fp = env["summary"]["eval_fingerprint"]
    champ_f1 = float(registry.list_versions(cfg.mlflow)[-1]["metrics"]["e2e_f1"])
    with mlflow.start_run(run_name="more-versions"):
        versions = []
        for _ in range(2):
            info = pyfunc.log_codec_model(
                str(env["root"] / "model.pt"), "codec", cfg.mlflow.registered_model
            )
            versions.append(str(info.registered_model_version))
    worse, better = versions
    base = {"textboost.metric.bpp": "0.01", "textboost.eval_fingerprint": fp}
    registry.tag_version(cfg.mlflow, worse, {**base, "textboost.metric.e2e_f1": champ_f1 - 0.1})
    registry.tag_version(cfg.mlflow, better, {**base, "textboost.metric.e2e_f1": champ_f1 + 0.1})

    assert not registry.maybe_promote(cfg.mlflow, worse)["champion"]
    aliases = {v["version"]: v["aliases"] for v in registry.list_versions(cfg.mlflow)}
    assert aliases[worse] == ["candidate"] and aliases["1"] == ["champion"]
    assert registry.maybe_promote(cfg.mlflow, better)["champion"]
    aliases = {v["version"]: v["aliases"] for v in registry.list_versions(cfg.mlflow)}
    assert aliases[better] == ["candidate", "champion"] and aliases["1"] == []

    capsys.readouterr()
    assert main(["registry", "list", str(env["cfg_file"])]) == 0
    listing = capsys.readouterr().out
    assert "candidate,champion" in listing and "e2e_f1" in listing
    assert main(["registry", "promote", str(env["cfg_file"]), "1"]) == 0
    aliases = {v["version"]: v["aliases"] for v in registry.list_versions(cfg.mlflow)}
    assert aliases["1"] == ["champion"]
    assert main(["registry", "promote", str(env["cfg_file"]), "99"]) == 1  # clear error, no trace
    assert "no version '99'" in capsys.readouterr().err


def test_evaluating_a_registered_version_tags_it_and_applies_the_aliases(env):
    """``eval.models=[models:/<registered_model>/N]`` (e.g. a training run's ``@trained``
    version): no second registration; that version gets the evaluation's tags and aliases."""
    from mlflow import MlflowClient

    from pipeline.evaluation import run_evaluation

    cfg = load_config(env["cfg_file"], ["eval.models=[models:/tb-test/1]",
                                        f"eval.out={env['root'] / 'eval-again'}"])  # fmt: skip
    before = registry.list_versions(cfg.mlflow)
    summary = run_evaluation(cfg)
    (reg,) = summary["registered"]
    assert reg["version"] == "1" and reg["model_uri"] == "models:/tb-test/1"
    assert len(registry.list_versions(cfg.mlflow)) == len(before)
    v1 = MlflowClient(cfg.mlflow.tracking_uri).get_model_version("tb-test", "1")
    assert v1.tags["textboost.eval_run_id"] == summary["run_id"]
    assert "candidate" in v1.aliases


def test_models_registered_before_the_split_still_find_the_codec_class():
    """MLflow pickles the pyfunc's class by its dotted path: models registered when the codec
    lived in ``pipeline.tracking`` name ``pipeline.tracking.TextBoostCodec``; new ones name
    ``pipeline.pyfunc.TextBoostCodec``."""
    import pickle

    import cloudpickle

    old = pickle.loads(b"cpipeline.tracking\nTextBoostCodec\n.")  # protocol 0 GLOBAL
    assert old is pyfunc.TextBoostCodec
    assert b"pipeline.pyfunc" in cloudpickle.dumps(pyfunc.TextBoostCodec())
