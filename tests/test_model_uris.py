"""A model URI that names nothing fails once, in the driver, naming what the registry holds."""

from __future__ import annotations

import pytest

from pipeline.model_uris import check_model_uris
from textboost.config import load_config
from textboost.errors import CheckpointError


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> dict:
    """A real sqlite MLflow store with model ``codec``: v1 @candidate, v2 (no alias)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root}/mlflow.db"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = c.create_experiment("t", artifact_location=(root / "art").as_uri())
    run = c.create_run(exp)
    (root / "model.pt").write_bytes(b"x")
    c.log_artifact(run.info.run_id, str(root / "model.pt"), artifact_path="checkpoint")
    c.create_registered_model("codec")
    for _ in range(2):
        c.create_model_version("codec", source=str(root), run_id=run.info.run_id)
    c.set_registered_model_alias("codec", "candidate", "1")
    return {"uri": uri, "root": root, "run_id": run.info.run_id}


def _error(uri: str, registry: dict) -> str:
    with pytest.raises(CheckpointError) as info:
        check_model_uris([uri], registry["uri"], "eval.models")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"eval.models {uri}")
    return msg


def test_existing_uris_pass(registry):
    run_id = registry["run_id"]
    check_model_uris(
        ["models:/codec@candidate", "models:/codec/2", "models:/codec/latest",
         f"runs:/{run_id}/checkpoint/model.pt", str(registry["root"] / "model.pt"), "zoo:hp-low"],
        registry["uri"],
    )  # fmt: skip


def test_missing_uris_name_what_exists(registry):
    msg = _error("models:/codec@champion", registry)
    assert "no alias @champion" in msg and "@candidate (v1)" in msg and "versions 2, 1" in msg
    msg = _error("models:/codec/7", registry)
    assert "no version '7'" in msg and "versions 2, 1" in msg
    msg = _error("models:/textboost@champion", registry)
    assert "no registered model 'textboost'" in msg and "registered models: codec" in msg
    msg = _error(f"runs:/{registry['run_id']}/checkpoint/other.pt", registry)
    assert "checkpoint/model.pt" in msg
    assert "no run 'nope'" in _error("runs:/nope/checkpoint/model.pt", registry)
    assert "does not exist" in _error(str(registry["root"] / "missing.pt"), registry)
    assert "hp-low" in _error("zoo:nope", registry)


def test_drivers_fail_before_any_work(registry, tmp_path):
    """Training and evaluation stop in the driver: no MLflow run, no Ray storage, no outputs."""
    from mlflow import MlflowClient

    from pipeline.evaluation import run_evaluation
    from pipeline.training import run_training

    cfg = load_config(None, [f"workdir={tmp_path}", f"mlflow.tracking_uri={registry['uri']}",
                             "mlflow.experiment=drivers", "train.stage=2", "train.run_name=s2",
                             "train.init_checkpoint=models:/codec@champion",
                             "eval.models=[models:/codec@champion]"])  # fmt: skip
    with pytest.raises(CheckpointError, match="train.init_checkpoint models:/codec@champion"):
        run_training(cfg)
    with pytest.raises(CheckpointError, match="eval.models models:/codec@champion: no alias"):
        run_evaluation(cfg)
    assert MlflowClient(registry["uri"]).get_experiment_by_name("drivers") is None
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "eval").exists()
