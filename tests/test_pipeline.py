"""End to end: ``textboost pipeline`` and ``textboost lineage`` on a tiny synthetic set.

One module-scoped workdir goes through a crash in stage 1 (fault injection: the environment
variable ``TEXTBOOST_FAULT_TRAIN_STEP``, ``pipeline.faults``), a resume, a
rerun that skips every stage, a changed evaluation setting that reruns only the stages after
it, and the lineage of the registered model (with a byte-for-byte shard rebuild). Real Ray
(embedded, started once for the module), real Ray Train, real MLflow (sqlite), real RapidOCR.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jobs import lineage, pipeline
from pipeline import faults
from pipeline.lineage import trace
from pipeline.stage_state import sha256_url
from textboost.config import load_config
from textboost.errors import ConfigError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
torch.set_num_threads(1)

STAGES = ["data", "shards", "stage1", "stage2", "evaluate", "register"]


def tiny_config(workdir: Path, tiny_yaml) -> Path:
    path = workdir / "tiny.yaml"
    path.write_text(
        tiny_yaml(
            workdir, images=6, shards="samples_per_shard: 3", num_workers=1,
            tail="""\
  lr: 1.0e-3
eval: {limit: 2, baselines: [jpeg, backbone], lpips: false, crops: 1}
mlflow: {experiment: tiny, registered_model: tiny-codec, bpp_budget: 10.0}
pipeline:
  stage1: [train.max_failures=0]
  stage2: [train.lr=1e-3, train.steps_per_epoch=2]
""",
        )
    )  # fmt: skip
    return path


def states(workdir: Path) -> dict[str, dict]:
    return {s: json.loads((workdir / "pipeline" / f"{s}.json").read_text()) for s in STAGES}


@pytest.fixture(scope="module")
def ray_session():
    import ray

    if ray.is_initialized():  # left over by another module: start a known one
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def run(ray_session, tmp_path_factory, tiny_yaml) -> dict:
    """Crash in stage 1, then the same command again: it resumes and finishes."""
    workdir = tmp_path_factory.mktemp("pipeline")
    config = tiny_config(workdir, tiny_yaml)
    with pytest.MonkeyPatch.context() as mp, pytest.raises(Exception, match="injected fault"):
        mp.setenv(faults.TRAIN_STEP, "3")  # rank 0 of stage 1 raises before step 3
        pipeline.main([str(config)])
    crashed = {s: json.loads((workdir / "pipeline" / f"{s}.json").read_text()) for s in STAGES[:3]}
    assert pipeline.main([str(config)]) == 0
    return {"workdir": workdir, "config": config, "crashed": crashed, "after": states(workdir)}


def test_a_crashed_stage_resumes_from_its_checkpoint(run: dict) -> None:
    crashed, after = run["crashed"], run["after"]
    assert crashed["data"]["status"] == crashed["shards"]["status"] == "done"
    assert crashed["stage1"]["status"] == "running"
    # The relaunch skipped the finished stages and reused the Ray Train run by name...
    assert after["shards"]["skipped"] and after["data"]["skipped"]
    assert after["stage1"]["run_name"] == crashed["stage1"]["run_name"]
    # ...which continued from the checkpoint of step 2 instead of starting over.
    metrics = after["stage1"]["outputs"]["metrics"]
    assert metrics["start_step"] == 2 and metrics["step"] == 4
    for stage in STAGES:
        assert after[stage]["status"] == "done", stage


def test_outputs_are_linked_by_hashes(run: dict) -> None:
    after = run["after"]
    shards = after["shards"]["outputs"]
    assert Path(shards["out"], "manifest.json").is_file()
    assert shards["counts"]["train"] == 6
    ckpt1, ckpt2 = after["stage1"]["outputs"], after["stage2"]["outputs"]
    assert sha256_url(ckpt2["checkpoint"]) == ckpt2["checkpoint_sha256"]
    assert ckpt1["checkpoint_sha256"] != ckpt2["checkpoint_sha256"]
    summary = after["evaluate"]["outputs"]["summary"]
    methods = {m["method"] for m in summary["means"]}
    assert {"textboost", "backbone", "jpeg"} <= methods
    textboost = next(m for m in summary["means"] if m["method"] == "textboost")
    assert 0 < textboost["bpp"] and textboost["psnr"] > 5
    register = after["register"]["outputs"]
    assert register["uri"] == f"models:/tiny-codec/{register['version']}"


def test_mlflow_holds_runs_and_the_registered_model(run: dict) -> None:
    from mlflow import MlflowClient

    cfg = load_config(run["config"])
    client = MlflowClient(cfg.mlflow.tracking_uri, registry_uri=cfg.mlflow.tracking_uri)
    after = run["after"]
    version = client.get_model_version("tiny-codec", after["register"]["outputs"]["version"])
    assert version.tags["textboost.train_run_id"] == after["stage2"]["outputs"]["run_id"]
    assert "candidate" in version.aliases
    train_run = client.get_run(after["stage2"]["outputs"]["run_id"])
    assert "train.loss" in train_run.data.metrics
    assert (
        train_run.data.tags["textboost.manifest_sha256"]
        == (after["shards"]["outputs"]["manifest_sha256"])
    )
    # Artifacts live under the workdir, not in ./mlruns of the current folder.
    exp = client.get_experiment_by_name("tiny")
    assert exp.artifact_location == (run["workdir"] / "mlartifacts").resolve().as_uri()


def test_a_second_run_skips_every_stage(run: dict, capsys) -> None:
    from mlflow import MlflowClient

    before = states(run["workdir"])
    assert pipeline.main([str(run["config"])]) == 0
    after = states(run["workdir"])
    for stage in STAGES:
        assert after[stage]["outputs"] == before[stage]["outputs"], stage
    out = capsys.readouterr().out
    assert out.count("skipped (up to date)") == len(STAGES)
    for row in (
        "TextBoost",
        "Backbone",
        "JPEG",
        "DET F1",
        "E2E F1",
        "mlflow ui --backend-store-uri",
    ):
        assert row in out
    cfg = load_config(run["config"])
    client = MlflowClient(cfg.mlflow.tracking_uri, registry_uri=cfg.mlflow.tracking_uri)
    assert len(client.search_model_versions("name = 'tiny-codec'")) == 1


def test_changing_a_setting_reruns_only_the_stages_after_it(run: dict) -> None:
    before = states(run["workdir"])
    assert pipeline.main([str(run["config"]), "pipeline.evaluate=[eval.crops=0]"]) == 0
    after = states(run["workdir"])
    for stage in ("data", "shards", "stage1", "stage2"):
        assert after[stage]["skipped"], stage
    for stage in ("evaluate", "register"):
        assert not after[stage]["skipped"], stage
    assert after["evaluate"]["outputs"]["run_id"] != before["evaluate"]["outputs"]["run_id"]
    assert (
        int(after["register"]["outputs"]["version"])
        == int(before["register"]["outputs"]["version"]) + 1
    )


def test_a_lost_output_is_rebuilt(run: dict) -> None:
    summary = Path(run["after"]["evaluate"]["outputs"]["summary"]["out"], "summary.json")
    summary.write_text(summary.read_text() + " ")  # the recorded sha256 no longer matches
    assert pipeline.main([str(run["config"]), "pipeline.stages=[evaluate]"]) == 0
    state = json.loads((run["workdir"] / "pipeline" / "evaluate.json").read_text())
    assert not state["skipped"]
    assert sha256_url(str(summary)) == state["outputs"]["summary_sha256"]


def test_lineage_traces_version_to_shards_and_rebuilds_them(run: dict, capsys) -> None:
    cfg = load_config(run["config"])
    uri = "models:/tiny-codec/1"
    t = trace(uri, cfg.mlflow.tracking_uri)
    after = run["after"]
    assert t["train_run"]["run_id"] == after["stage2"]["outputs"]["run_id"]
    assert t["train_run"]["config_hash"] == t["config_hash"]
    assert t["checkpoint"]["stage"] == 2
    assert t["shards"]["url"] == after["shards"]["outputs"]["out"]
    assert t["shards"]["manifest_sha256"] == after["shards"]["outputs"]["manifest_sha256"]
    assert t["shards"]["matches"]
    assert t["init_checkpoint"] == after["stage1"]["outputs"]["checkpoint"]

    assert lineage.main([uri, "--tracking-uri", cfg.mlflow.tracking_uri, "--rebuild"]) == 0
    out = capsys.readouterr().out
    assert "byte-identical" in out and "matches" in out

    # One flipped byte in a training shard: the rebuild no longer matches.
    shard = Path(t["shards"]["url"], "train-000001.tar")
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert lineage.main([uri, "--tracking-uri", cfg.mlflow.tracking_uri, "--rebuild"]) == 1
    assert "train-000001.tar" in capsys.readouterr().err


def test_stage_overrides_are_checked_before_anything_runs(tmp_path: Path, tiny_yaml) -> None:
    config = tiny_config(tmp_path, tiny_yaml)
    with pytest.raises(ConfigError, match=r"pipeline\.stage2.*train\.lrr"):
        pipeline.main([str(config), "pipeline.stage2=[train.lrr=1]"])
    with pytest.raises(ConfigError, match="may not change model"):
        pipeline.main([str(config), "pipeline.stage1=[model.N=16]"])
    with pytest.raises(ConfigError, match="only the fusion block"):
        pipeline.main([str(config), "pipeline.stage2=[model.fusion=colour,model.M=16]"])
    assert not (tmp_path / "pipeline" / "data.json").exists()


def test_a_stage_without_its_inputs_says_which_stage_to_add(tmp_path: Path, tiny_yaml) -> None:
    config = tiny_config(tmp_path, tiny_yaml)
    with pytest.raises(ConfigError, match="needs the outputs of stage"):
        pipeline.main([str(config), "pipeline.stages=[stage2]"])


def test_lineage_rejects_a_uri_that_is_not_a_registered_model(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(ConfigError, match="models:/NAME/VERSION"):
        lineage.main(["runs:/abc/model", "--tracking-uri", uri])
    from mlflow import MlflowClient

    MlflowClient(uri).search_experiments()  # an existing, empty tracking database
    with pytest.raises(ConfigError, match="not in the registry"):
        lineage.main(["models:/nothing/1", "--tracking-uri", uri])
