"""Ray Train DDP for both training stages (paper 4.3, 5.1.4): the driver, ``run_training``.

The driver checks the config, resolves the run name and storage, opens (or, on relaunch,
reopens) the MLflow run (``pipeline.train_tracking``), and runs a ``TorchTrainer`` whose
workers are ``pipeline.train_worker.train_loop_per_worker`` (one DDP rank each, given a
``WorkerArgs``). The final ``model.pt`` is logged to the MLflow run and, with
``train.register``, registered.

Resumption: after a worker failure Ray Train restarts the worker group and
``ray.train.get_checkpoint()`` returns the latest checkpoint; relaunching with the same
``train.run_name`` (same storage path) reloads the run's checkpoint snapshot the same way
(Ray Train V2: ``restore``/``can_restore`` are gone); see ``pipeline.train_worker``.

The pieces: one optimisation step ``pipeline.train_step``, checkpoint I/O
``pipeline.train_checkpoint``, MLflow run and metrics ``pipeline.train_tracking``, the fault
hook ``pipeline.faults``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from pipeline import faults
from pipeline.loader import shard_list
from pipeline.sources import absolute_url
from pipeline.tracking import TAG
from pipeline.train_checkpoint import (
    MODEL_FILE,
    checkpoint_url,
    init_checkpoint_tags,
    worker_init_checkpoint,
)
from pipeline.train_tracking import absolute_tracking_uri, open_mlflow_run
from pipeline.train_worker import WorkerArgs, train_loop_per_worker
from textboost.config import TextBoostConfig, TrainConfig, config_hash, to_dict
from textboost.errors import CheckpointError, ConfigError


def git_commit() -> str:
    """The commit of this source tree; without git (a container image: no .git) the
    ``TEXTBOOST_GIT_COMMIT`` the image was built with (infra/Dockerfile), else "unknown"."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("TEXTBOOST_GIT_COMMIT", "").strip() or "unknown"


def storage_root(tcfg: TrainConfig) -> str:
    """Ray's storage path (local or any pyarrow/fsspec URL: s3://, gs://, ...)."""
    return absolute_url(tcfg.storage_path)


def unique_run_name(stage: int) -> str:
    return f"stage{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _val_urls(shards: str, tcfg: TrainConfig) -> list[str]:
    """The val split's shards when a validation needs them. Stage-2 F1 validation
    (``train.val_every``) needs the split; loss/bpp/PSNR validation (``train.val_crops``, on by
    default) is skipped with a one-line note when the shards have no val split."""
    from textboost.errors import ShardError

    if tcfg.stage == 2 and tcfg.val_every > 0:
        return shard_list(shards, "val")
    if tcfg.val_crops == 0:
        return []
    try:
        return shard_list(shards, "val")
    except ShardError:
        print(f"note: {shards} has no val split: no validation during training "
              "(`textboost shards build CONFIG --split val`)", file=sys.stderr)  # fmt: skip
        return []


def _check_config(tcfg: TrainConfig) -> None:
    """Fail before anything starts: stage 2 without its init checkpoint, empty schedules."""
    if tcfg.stage == 2 and not tcfg.init_checkpoint:
        raise ConfigError("train.stage=2 needs train.init_checkpoint (a stage-1 checkpoint)")
    if tcfg.checkpoint_every < 1 or tcfg.steps_per_epoch < 1 or tcfg.epochs < 1:
        raise ConfigError("train.checkpoint_every, steps_per_epoch and epochs must be >= 1")


def _check_init_checkpoint(tcfg: TrainConfig, tracking_uri: str) -> None:
    """A bad ``train.init_checkpoint`` URI fails here, once, naming what exists."""
    if tcfg.init_checkpoint:
        from pipeline.model_uris import check_model_uris

        init = worker_init_checkpoint(tcfg.init_checkpoint)
        check_model_uris([init], tracking_uri, "train.init_checkpoint")


def _run_tags(cfg: TextBoostConfig, shards: str, experiment_dir: str) -> dict:
    """The MLflow run's lineage tags (docs/architecture.md "Lineage")."""
    from pipeline.shards import manifest_sha256

    commit = git_commit()
    tags = {
        f"{TAG}manifest_sha256": manifest_sha256(shards),
        f"{TAG}config_hash": config_hash(cfg),
        f"{TAG}git_commit": commit,
        "mlflow.source.git.commit": commit,
        f"{TAG}stage": cfg.train.stage,
        f"{TAG}storage": experiment_dir,
    }
    tags.update(init_checkpoint_tags(cfg.train.init_checkpoint))
    return tags


def _worker_cfg(cfg: TextBoostConfig, run_name: str, shards: str, root: str) -> dict:
    """The config as resolved for the workers (and recorded in checkpoints)."""
    worker_cfg = to_dict(cfg)
    worker_cfg["train"].update(run_name=run_name, shards=shards, storage_path=root)
    worker_cfg["train"]["init_checkpoint"] = worker_init_checkpoint(cfg.train.init_checkpoint)
    return worker_cfg


def _trainer(args: WorkerArgs, tcfg: TrainConfig, root: str):
    """The ``TorchTrainer`` of the run (gloo on CPUs, nccl on GPUs)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=args.to_config(),
        torch_config=TorchConfig(backend="nccl" if tcfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=tcfg.num_workers, use_gpu=tcfg.use_gpu),
        run_config=RunConfig(
            name=args.run_name,
            storage_path=root,
            failure_config=FailureConfig(max_failures=tcfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=tcfg.keep_checkpoints),
        ),
    )


def _log_checkpoint(cfg: TextBoostConfig, checkpoint, client, run_id: str, tracking_uri: str):
    """Log the final ``model.pt`` to the MLflow run; with ``train.register``, register it
    (``models:/<mlflow.registered_model>@trained``). Returns the registration or None."""
    with checkpoint.as_directory() as d:
        client.log_artifact(run_id, os.path.join(d, MODEL_FILE), artifact_path="checkpoint")
        if not cfg.train.register:
            return None
        import dataclasses

        from pipeline.registry import register_trained

        return register_trained(
            dataclasses.replace(cfg.mlflow, tracking_uri=tracking_uri), run_id,
            os.path.join(d, MODEL_FILE), cfg.train.stage,
            {"t_test": cfg.data.filter.t_test, "side_info_format": cfg.shards.side_info_format},
        )  # fmt: skip


def run_training(cfg: TextBoostConfig) -> dict:
    """Run one training stage on Ray Train; returns ``{"checkpoint", "run_id", ...}``."""
    from mlflow.tracking import MlflowClient

    from pipeline.executor import ensure_ray

    tcfg = cfg.train
    _check_config(tcfg)
    tracking_uri = absolute_tracking_uri(cfg.mlflow.tracking_uri)
    _check_init_checkpoint(tcfg, tracking_uri)
    run_name, root = tcfg.run_name or unique_run_name(tcfg.stage), storage_root(tcfg)
    shards = absolute_url(tcfg.shards)  # Ray workers run in their own working directory
    urls = shard_list(shards, "train")  # validates the manifest (ShardError with what to do)
    tags = _run_tags(cfg, shards, f"{root}/{run_name}")
    run_id = open_mlflow_run(cfg, run_name, tags, tracking_uri)
    args = WorkerArgs(
        cfg=_worker_cfg(cfg, run_name, shards, root), urls=tuple(urls),
        val_urls=tuple(_val_urls(shards, tcfg)), run_name=run_name, mlflow_run_id=run_id,
        tracking_uri=tracking_uri, experiment_dir=f"{root}/{run_name}",
        manifest_sha=tags[f"{TAG}manifest_sha256"], fault_train_step=faults.train_step(),
    )  # fmt: skip
    ensure_ray(cfg.ray, dashboard=True)  # Ray Train's placement-group cleaner needs it
    trainer = _trainer(args, tcfg, root)
    client = MlflowClient(tracking_uri)
    try:
        result = trainer.fit()
        if result.checkpoint is None:
            raise CheckpointError(f"run {run_name} finished without a checkpoint")
        registered = _log_checkpoint(cfg, result.checkpoint, client, run_id, tracking_uri)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    out = {
        "checkpoint": checkpoint_url(result.checkpoint, root),
        "run_id": run_id,
        "run_name": run_name,
        "artifact_uri": f"runs:/{run_id}/checkpoint/{MODEL_FILE}",
        "metrics": dict(result.metrics or {}),
    }
    if registered is not None:
        out["registered"] = registered
    return out
