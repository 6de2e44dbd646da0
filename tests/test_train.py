"""Training: stage 1 / stage 2 steps, and real Ray Train DDP runs with faults, resume, MLflow.

Fault injection (``pipeline.faults``): ``TEXTBOOST_FAULT_TRAIN_STEP=<n>`` makes rank 0 raise
once before step ``n`` (a marker file in the run's folder stops it from raising again after
the resume); the driver reads it in ``run_training`` and passes it to the workers.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from jobs.train import expand_overrides, main
from pipeline import faults
from pipeline.loader import LoaderSpec, make_loader, shard_list
from pipeline.train_step import Stepper, lr_factor, restore
from pipeline.train_tracking import MetricLog
from textboost.config import load_config, to_dict
from textboost.errors import ConfigError
from textboost.model import build_model
from textboost.model.checkpoint import load_checkpoint

torch.set_num_threads(1)

TINY = [
    "model.backbone=hyperprior", "model.N=8", "model.M=8",
    "train.crop_size=64", "train.batch_size=2", "train.num_workers=2",
    "train.loader_workers=1", "train.lr=1e-3", "train.log_every=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """Tiny synthetic scene-text shards, built by the real shard builder (helper D)."""
    from pipeline.shards import build_shards

    out = tmp_path_factory.mktemp("data")
    cfg = load_config(None, [f"workdir={out}", "data.synth.images=8", "data.synth.min_side=64",
                             "data.synth.max_side=96", "data.synth.words_min=2",
                             "shards.samples_per_shard=2", "shards.executor=local",
                             "shards.progress=false"])  # fmt: skip
    build_shards(cfg, "train")
    build_shards(cfg, "val")  # read by the validation during training
    return cfg.shards.out


def _cfg(tmp, shards: str, *extra: str):
    return load_config(None, [f"workdir={tmp}", f"train.shards={shards}", *TINY, *extra])


def test_stage_shorthand_and_lr_schedule():
    assert expand_overrides(["stage=2", "train.lr=1", "model.stage=3"]) == [
        "train.stage=2",
        "train.lr=1",
        "model.stage=3",
    ]
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)  # warmup
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(99, 100, 0, "constant") == 1.0


def test_stage2_without_init_checkpoint_is_a_config_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"workdir: {tmp_path}\n")
    with pytest.raises(ConfigError, match="init_checkpoint"):
        main([str(cfg), "stage=2"])


def _batches(shards: str, n: int, with_mask: bool):
    spec = LoaderSpec(shard_list(shards), 2, 64, seed=0, num_workers=0, with_mask=with_mask)
    return list(make_loader(spec, n))


def test_stage1_step_trains_everything_stage2_only_the_fusion_block(tmp_path, shards):
    torch.manual_seed(0)
    cfg = _cfg(tmp_path, shards)
    model = build_model(cfg.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stepper = Stepper(model, cfg.train, torch.device("cpu"), total_steps=4)
    for batch in _batches(shards, 2, with_mask=False):
        losses = stepper.step(batch)
    assert {"loss", "bpp_loss", "mse_loss", "psnr", "aux_loss"} <= set(losses)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("backbone.g_a") for k in changed)
    assert any(k.endswith("quantiles") for k in changed)  # aux optimizer stepped

    cfg2 = _cfg(tmp_path, shards, "train.stage=2")
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    stepper = Stepper(model, cfg2.train, torch.device("cpu"), total_steps=4)
    for batch in _batches(shards, 3, with_mask=True):
        losses = stepper.step(batch)
    assert losses["gc_loss"] > 0 and stepper.aux_optimizer is None
    for k, v in model.state_dict().items():
        if k.startswith("fusion_block."):
            continue
        assert torch.equal(v, frozen[k]), f"stage 2 changed frozen tensor {k}"
    fusion = [k for k in frozen if k.startswith("fusion_block.project")]
    assert any(not torch.equal(model.state_dict()[k], frozen[k]) for k in fusion)


def test_resume_puts_the_optimizer_state_on_the_model_device(tmp_path, shards):
    """``restore`` (the worker's resume) on a model bound for another device: every Adam
    moment must end up on its parameter's device. The ``meta`` device stands in for a GPU;
    swapping parameters on conversion keeps the Parameter objects (as ``.to("cuda")`` does),
    so the optimizer still holds the model's parameters after the move."""
    cfg = _cfg(tmp_path, shards)
    torch.manual_seed(0)
    stepper = Stepper(build_model(cfg.model), cfg.train, torch.device("cpu"), total_steps=4)
    for batch in _batches(shards, 1, with_mask=False):
        stepper.step(batch)
    state = {**stepper.state_dict(), "step": 1}
    meta = torch.device("meta")
    resumed = Stepper(build_model(cfg.model), cfg.train, meta, total_steps=4)
    swap = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        restore(resumed, state, meta)
    finally:
        torch.__future__.set_swap_module_params_on_conversion(swap)
    checked = 0
    for opt in (resumed.optimizer, resumed.aux_optimizer):
        for group in opt.param_groups:
            for p in group["params"]:
                assert p.device == meta
                for key, value in opt.state[p].items():
                    if key != "step":  # Adam's scalar step count lives on the CPU by design
                        assert value.device == p.device, key
                        checked += 1
    assert checked >= 2 * len(list(resumed.model.parameters()))
    assert resumed.scheduler.last_epoch == stepper.scheduler.last_epoch


def test_metric_log_averages_windows_and_survives_a_failing_store(tmp_path, capsys):
    """Real MLflow (sqlite): one row per window of ``log_every`` steps holding the window's
    mean; a flush into a store that refuses (deleted run) warns in one line, keeps at most
    ``max_rows`` rows, and sends them once the store accepts again."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(exp).info.run_id
    log = MetricLog(uri, run_id, log_every=4, flush_s=1e9, max_rows=3)
    for step in range(1, 11):
        log.add(step, {"train.loss": torch.tensor(float(step))})
    log.flush()  # windows 1-4, 5-8 and the open one, 9-10

    def history():
        rows = client.get_metric_history(run_id, "train.loss")
        return sorted((h.step, h.value) for h in rows)

    assert history() == [(4, 2.5), (8, 6.5), (10, 9.5)]
    capsys.readouterr()
    client.delete_run(run_id)  # the store now refuses every row
    for step in range(11, 23):
        log.add(step, {"train.loss": float(step)})
    log.flush()  # windows at 12, 16, 20 and 22: the oldest is dropped (max_rows=3)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: MLflow metric flush failed")
    assert (len(log.pending), log.dropped, log.failures) == (3, 1, 1)
    client.restore_run(run_id)
    log.flush()
    assert history() == [(4, 2.5), (8, 6.5), (10, 9.5), (16, 14.5), (20, 18.5), (22, 21.5)]
    assert not log.pending


def test_worker_args_travel_as_plain_data_and_come_back_equal():
    """``WorkerArgs`` is frozen; Ray Train gets it as a dict of plain data (lists, no
    tuples: Ray records the config with the run) and the rank rebuilds an equal one."""
    import dataclasses

    from pipeline.train_worker import WorkerArgs

    cfg = load_config(None, ["train.stage=1", "seed=3"])
    args = WorkerArgs(
        cfg=to_dict(cfg), urls=("a.tar", "b.tar"), val_urls=(), run_name="r", mlflow_run_id="m",
        tracking_uri="sqlite:////x.db", experiment_dir="/s/r", manifest_sha="0" * 64,
        fault_train_step=-1,
    )  # fmt: skip
    config = args.to_config()
    assert config["urls"] == ["a.tar", "b.tar"] and config["val_urls"] == []
    assert WorkerArgs.from_config(config) == args
    assert args.train == cfg.train and args.seed == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        args.urls = ()


def test_gpu_smoke_help_works_anywhere_and_without_a_gpu_it_says_so(capsys):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "jobs.gpu_smoke", "--help"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and "--cpu" in out.stdout and "NCCL" in out.stdout
    if not torch.cuda.is_available():
        from jobs.gpu_smoke import NO_GPU_EXIT
        from jobs.gpu_smoke import main as smoke

        assert smoke([]) == NO_GPU_EXIT
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA GPU" in err[0] and "--cpu" in err[0]


# ------------------------------------------------------------------ real Ray Train runs


@pytest.fixture(scope="module")
def ray_cluster():
    """One embedded Ray for the module. On a busy 2-core CI box, starting a worker group can
    take longer than Ray Train's default 60 s limit; a faster health check ends runs sooner."""
    import ray

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")
        mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def stage1(ray_cluster, workdir, shards) -> dict:
    """2 workers, 4 steps, checkpoints at 2 and 4; rank 0 raises once before step 3."""
    from pipeline.training import run_training

    cfg = _cfg(workdir, shards, "train.run_name=s1", "train.epochs=1", "train.steps_per_epoch=4",
               "train.checkpoint_every=2", "train.max_failures=1")  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(faults.TRAIN_STEP, "3")  # read by the driver, passed to the workers
        return {"cfg": cfg, "result": run_training(cfg)}


def _client(cfg):
    from mlflow.tracking import MlflowClient

    return MlflowClient(cfg.mlflow.tracking_uri)


@pytest.mark.slow
def test_stage1_recovers_from_a_worker_failure_and_logs_to_mlflow(stage1, workdir):
    cfg, result = stage1["cfg"], stage1["result"]
    m = result["metrics"]
    assert (m["step"], m["start_step"], m["resumes"]) == (4, 2, 1)  # resumed from step 2
    assert (workdir / "ray_results" / "s1" / "fault_injected_at_step_3").exists()
    model, meta = load_checkpoint(result["checkpoint"])
    assert meta["stage"] == 1 and meta["run_config"]["train"]["run_name"] == "s1"

    client = _client(cfg)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lmbda"] == str(cfg.train.lmbda)
    assert run.data.params["model.N"] == "8"
    tags = run.data.tags
    assert (
        tags["textboost.manifest_sha256"] == meta["manifest_sha256"]
        and len(meta["manifest_sha256"]) == 64
    )
    assert len(tags["textboost.config_hash"]) == 64 and tags["textboost.git_commit"]
    for key in ("train.loss", "train.bpp", "train.mse", "train.psnr", "train.lr",
                "train.images_per_s"):  # fmt: skip
        history = client.get_metric_history(run.info.run_id, key)
        assert {h.step for h in history} == {1, 2, 3, 4}, key
        assert all(math.isfinite(h.value) for h in history)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == [
        "checkpoint/model.pt"
    ]
    # validation on the val shards at the epoch's end (step 4): loss, bpp, PSNR
    for key in ("val.loss", "val.bpp", "val.mse", "val.psnr"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [h.step for h in history] == [4], key
        assert math.isfinite(history[0].value) and history[0].value > 0, key


@pytest.fixture(scope="module")
def relaunch(stage1, workdir, shards) -> dict:
    """The same run name again, with a second epoch: resumes from step 4, not from zero."""
    from pipeline.training import run_training

    cfg = _cfg(workdir, shards, "train.run_name=s1", "train.epochs=2", "train.steps_per_epoch=4",
               "train.checkpoint_every=2")  # fmt: skip
    return {"cfg": cfg, "result": run_training(cfg)}


@pytest.mark.slow
def test_relaunch_with_the_same_name_resumes(stage1, relaunch):
    result = relaunch["result"]
    m = result["metrics"]
    assert (m["step"], m["start_step"], m["resumes"]) == (8, 4, 2)
    assert result["run_id"] == stage1["result"]["run_id"]  # the same MLflow run goes on
    run = _client(relaunch["cfg"]).get_run(result["run_id"])
    assert run.data.tags["textboost.relaunch.train.epochs"] == "2"
    steps = {
        h.step for h in _client(relaunch["cfg"]).get_metric_history(result["run_id"], "train.loss")
    }
    assert steps == set(range(1, 9))


@pytest.mark.slow
def test_stage2_from_mlflow_uri_freezes_everything_but_the_fusion_block(
    relaunch, workdir, shards, capsys
):
    base = relaunch["result"]
    config = workdir / "tiny.yaml"
    config.write_text(f"workdir: {workdir}\ntrain:\n  shards: {shards}\n")
    argv = [str(config), "stage=2", *TINY, f"train.init_checkpoint={base['artifact_uri']}",
            "train.run_name=s2", "train.steps_per_epoch=3", "train.checkpoint_every=3",
            "train.register=true", "mlflow.registered_model=s2-codec", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["metrics"]["step"] == 3 and result["run_id"] != base["run_id"]

    before, _ = load_checkpoint(base["checkpoint"])
    after, meta = load_checkpoint(result["checkpoint"])
    assert meta["stage"] == 2
    old, new = before.state_dict(), after.state_dict()
    assert old.keys() == new.keys()
    frozen = [k for k in old if not k.startswith("fusion_block.")]
    assert frozen and all(torch.equal(old[k], new[k]) for k in frozen)
    assert any(not torch.equal(old[k], new[k]) for k in old if k.startswith("fusion_block."))
    gc = _client(relaunch["cfg"]).get_metric_history(result["run_id"], "train.gc_loss")
    assert len(gc) == 3 and all(h.value > 0 for h in gc)
    # train.register: the final checkpoint is a registered pyfunc at @trained, so the next
    # stage or the evaluation can name it before it is evaluated or meets any bpp budget
    assert result["registered"]["uri"] == "models:/s2-codec@trained"
    version = _client(relaunch["cfg"]).get_model_version_by_alias("s2-codec", "trained")
    assert version.run_id == result["run_id"]
    assert version.tags["textboost.train_run_id"] == result["run_id"]
    registered, _ = load_checkpoint("models:/s2-codec@trained")
    assert registered.identity() == after.identity()
