"""Ray Train DDP for both training stages (paper 4.3, 5.1.4), with checkpoints and MLflow.

Driver (``run_training``): resolves the run name and storage, opens (or, on relaunch, reopens)
the MLflow run, and runs a ``TorchTrainer``. Workers (``train_loop_per_worker``): build the
model (stage 2: from the stage-1 checkpoint, backbone frozen), wrap it in DDP with
``ray.train.torch.prepare_model``, read crops from the webdataset loader and report a
checkpoint (``model.pt`` + ``trainer_state.pt``) every ``train.checkpoint_every`` steps.

Rank 0 logs metrics to MLflow directly, so every node must reach the tracking store (the
sqlite default suits one machine; use an MLflow server on a cluster).

Resumption: after a worker failure Ray Train restarts the worker group and
``ray.train.get_checkpoint()`` returns the latest checkpoint; relaunching with the same
``train.run_name`` (same storage path) reloads the run's checkpoint snapshot the same way
(Ray Train V2: ``restore``/``can_restore`` are gone). Model, optimizers, LR schedule and step
are restored exactly; the data stream after a mid-epoch resume is a fresh deterministic draw
seeded by (seed, epoch, resume step, rank).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import torch

from pipeline import faults
from pipeline.loader import (
    LoaderSpec,
    SkipTally,
    derive_seed,
    make_loader,
    shard_list,
    text_share,
    to_float,
)
from pipeline.sources import absolute_url
from textboost.config import (
    ModelConfig,
    TextBoostConfig,
    TrainConfig,
    config_hash,
    flatten,
    section_from_dict,
    to_dict,
)
from textboost.errors import CheckpointError, ConfigError

MODEL_FILE = "model.pt"
STATE_FILE = "trainer_state.pt"
TAG = "textboost."  # MLflow tag prefix
METRIC_KEYS = {  # loss-dict key -> MLflow metric name
    "loss": "train.loss",
    "bpp_loss": "train.bpp",
    "mse_loss": "train.mse",
    "psnr": "train.psnr",
    "gc_loss": "train.gc_loss",
    "aux_loss": "train.aux_loss",
}


# ---------------------------------------------------------------- one optimisation step


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base LR after ``step`` optimizer steps (linear warmup, then cosine)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class Stepper:
    """Model, optimizers, LR schedule and loss of one stage; ``step`` runs one update.

    Stage 1: whole model, rate-distortion loss (Eq. 7) plus compressai's aux loss. Stage 2:
    backbone frozen, fusion block only, Eq. 8 with ``α·L_gc``. Main and aux losses go through
    one backward pass (their parameters are disjoint), so DDP sees every parameter each step.
    """

    def __init__(self, model, tcfg: TrainConfig, device: torch.device, total_steps: int):
        from textboost.train_steps import prepare_stage

        self.tcfg, self.device, self.stage = tcfg, device, tcfg.stage
        self.model = model  # the TextBoost module (never the DDP wrapper)
        self.optimizer, self.aux_optimizer, self.criterion = prepare_stage(
            model,
            tcfg.stage,
            tcfg.lr,
            tcfg.aux_lr,
            tcfg.lmbda,
            tcfg.alpha,
            tcfg.gc_target,
            tcfg.roi_weight,
        )
        factor = lambda s: lr_factor(s, total_steps, tcfg.warmup_steps, tcfg.lr_schedule)  # noqa: E731
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.net = model  # replaced by the DDP wrapper in workers
        self.amp = tcfg.amp == "bf16"

    def step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One update on a uint8 batch from the loader; returns detached loss tensors."""
        from textboost.train_steps import train_step

        inputs = to_float(batch, self.device, non_blocking=True)
        losses = train_step(
            self.net,
            self.criterion,
            self.optimizer,
            self.aux_optimizer,
            inputs["image"],  # Bx3xSxS in [0, 1]
            inputs["guidance"],
            inputs["text_mask"],
            clip_max_norm=self.tcfg.clip_max_norm,
            bf16=self.amp,
            cmap=inputs.get("cmap"),
            box=inputs.get("box"),
            text=inputs.get("text"),
        )
        self.scheduler.step()
        return losses

    def state_dict(self) -> dict:
        aux = self.aux_optimizer.state_dict() if self.aux_optimizer is not None else None
        return {
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": aux,
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.aux_optimizer is not None and state.get("aux_optimizer") is not None:
            self.aux_optimizer.load_state_dict(state["aux_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def restore(stepper: Stepper, state: dict | None, device: torch.device) -> None:
    """Move the model to ``device``, then load the trainer state (optimizers, LR schedule).

    The order matters: ``Optimizer.load_state_dict`` casts every state tensor (Adam's
    ``exp_avg``/``exp_avg_sq``) to the device of its parameter *at load time*, and the
    parameters are the same objects before and after ``.to`` (and ``prepare_model``). Loading
    first would leave the moments on the CPU and the first step after a resume on a GPU would
    fail on mixed devices. (Adam's scalar ``step`` stays on the CPU by torch's design.)
    """
    stepper.model.to(device)
    if state is not None:
        stepper.load_state_dict(state)


# ---------------------------------------------------------------- checkpoints


def write_checkpoint(directory: str, stepper: Stepper, args: dict, progress: dict) -> None:
    """``model.pt`` (textboost.checkpoint format) and ``trainer_state.pt`` into ``directory``."""
    from textboost.checkpoint import save_checkpoint

    model_cfg = section_from_dict(ModelConfig, args["cfg"]["model"])
    save_checkpoint(
        os.path.join(directory, MODEL_FILE),
        stepper.model,
        model_cfg,
        args["cfg"],
        args["manifest_sha"],
        stepper.stage,
    )
    torch.save({**stepper.state_dict(), **progress}, os.path.join(directory, STATE_FILE))


def _initial_model(args: dict, tcfg: TrainConfig):
    """(model, trainer state or None): from the run's latest checkpoint, the stage-2 init
    checkpoint, or a fresh model (stage 1)."""
    import ray.train

    from textboost.checkpoint import load_checkpoint
    from textboost.model import build_model

    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            model, _ = load_checkpoint(os.path.join(d, MODEL_FILE))
            state = torch.load(os.path.join(d, STATE_FILE), weights_only=True)
        return model, state
    if tcfg.stage == 2 and not tcfg.init_checkpoint:
        raise ConfigError("train.stage=2 needs train.init_checkpoint (a stage-1 checkpoint)")
    if tcfg.init_checkpoint:  # stage 2, or a stage-1 fine-tune (new rate point, quickstart)
        import mlflow

        mlflow.set_tracking_uri(args["tracking_uri"])  # for runs:/ and models:/ URIs
        model, _ = load_checkpoint(tcfg.init_checkpoint)
        from textboost.train_steps import with_fusion

        torch.manual_seed(args["cfg"]["seed"])  # the same fresh block (if any) on every rank
        try:  # another fusion block on the same backbone: a new block, the backbone's weights
            model = with_fusion(model, section_from_dict(ModelConfig, args["cfg"]["model"]))
        except ValueError as exc:
            raise ConfigError(f"train.init_checkpoint {tcfg.init_checkpoint}: {exc}") from None
        return model, None
    torch.manual_seed(args["cfg"]["seed"])  # same initial weights on every rank
    return build_model(section_from_dict(ModelConfig, args["cfg"]["model"])), None


# ---------------------------------------------------------------- the worker loop


class MetricLog:
    """Rank-0 MLflow logging of the training metrics, cheap enough for millions of steps.

    Each metric is **averaged over a window** of ``log_every`` steps (over the steps of the
    window that reported it) and logged once, at the window's last step: ``log_every=50`` gives
    one row per metric per 50 steps (a window is also closed early at checkpoints and at the
    end). Values may be device tensors: they are summed on the device and read once a window.
    Rows are sent in batches every ``flush_s`` seconds and at checkpoints, so fast steps never
    wait on the tracking store. A failing flush (server down, timeout) prints a one-line
    warning and never stops training: the rows stay buffered and go with the next flush; at
    most ``max_rows`` are kept (the oldest are dropped, and counted in ``dropped``).
    """

    def __init__(
        self, tracking_uri: str, run_id: str, log_every: int = 1, flush_s: float = 15.0,
        max_rows: int = 100_000,
    ):  # fmt: skip
        from mlflow.tracking import MlflowClient

        self.client, self.run_id, self.flush_s = MlflowClient(tracking_uri), run_id, flush_s
        self.log_every, self.max_rows = max(1, log_every), max_rows
        self.pending: list[tuple[int, str, float]] = []  # (step, key, value) rows to send
        self.sums: dict = {}
        self.counts: dict[str, int] = {}
        self.step, self.dropped, self.failures = 0, 0, 0
        self.last = time.monotonic()

    def add(self, step: int, values: dict) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.step = step
        if step % self.log_every == 0:
            self.close_window()
        if time.monotonic() - self.last >= self.flush_s:
            self.flush()

    def close_window(self) -> None:
        """Turn the window's sums into rows (mean per key) at the latest step."""
        for key, total in self.sums.items():
            self.pending.append((self.step, key, float(total) / self.counts[key]))
        self.sums, self.counts = {}, {}
        excess = len(self.pending) - self.max_rows
        if excess > 0:
            del self.pending[:excess]
            self.dropped += excess

    def flush(self) -> None:
        """Close the open window and send every buffered row (never raises)."""
        from mlflow.entities import Metric

        self.close_window()
        self.last = time.monotonic()
        now, sent = int(time.time() * 1000), 0
        try:
            while sent < len(self.pending):
                chunk = self.pending[sent : sent + 1000]  # MLflow's batch limit
                metrics = [Metric(key, value, now, step) for step, key, value in chunk]
                self.client.log_batch(self.run_id, metrics=metrics)
                sent += len(chunk)
        except Exception as exc:  # any store failure: warn, keep the rows, train on
            self.failures += 1
            why = (str(exc).strip().splitlines() or [""])[0][:200]
            print(
                f"warning: MLflow metric flush failed at step {self.step} "
                f"({type(exc).__name__}: {why}); {len(self.pending) - sent} rows kept for "
                f"the next flush (at most {self.max_rows})",
                file=sys.stderr,
                flush=True,
            )
        del self.pending[:sent]


def train_loop_per_worker(args: dict) -> None:
    """One DDP rank (Ray Train worker). ``args``: see ``run_training``."""
    import ray.train
    import ray.train.torch

    tcfg = section_from_dict(TrainConfig, args["cfg"]["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    total_steps = tcfg.epochs * tcfg.steps_per_epoch
    model, state = _initial_model(args, tcfg)
    stepper = Stepper(model, tcfg, device, total_steps)  # stage 2: freezes the backbone
    restore(stepper, state, device)
    step = int(state["step"]) if state else 0
    resumes = list(state["resumes"]) + [step] if state else []
    # DDP over the trainable parameters. Buffers are not broadcast: nothing trains them, and
    # rank 0 refreshes the entropy models' CDF tables when it saves a checkpoint.
    stepper.net = ray.train.torch.prepare_model(
        model, parallel_strategy_kwargs={"forward_sync_buffers": False}
    )
    torch.manual_seed(derive_seed(args["cfg"]["seed"], "noise", rank, step))
    spec = LoaderSpec(
        urls=args["urls"], batch_size=tcfg.batch_size, crop_size=tcfg.crop_size,
        seed=args["cfg"]["seed"], rank=rank, world_size=world,
        num_workers=tcfg.loader_workers, pin_memory=tcfg.use_gpu,
        with_mask=tcfg.stage == 2 or model.kind == "roi",  # L_gc, or the ROI encoder input
        with_colour=model.needs_colour, with_text=model.kind == "taco_style",
        text_crop_prob=tcfg.text_crop_prob, shuffle_buffer=tcfg.shuffle_buffer,
    )  # fmt: skip
    validator = None
    if rank == 0 and tcfg.stage == 2 and tcfg.val_every > 0:
        from pipeline.validation import Validator

        validator = Validator(args["val_urls"], tcfg.val_images, model.needs_colour)
    rd_validator = None
    if rank == 0 and tcfg.val_crops > 0 and args["val_urls"]:
        from pipeline.validation import RDValidator

        rd_validator = RDValidator(
            args["val_urls"], tcfg.val_crops, tcfg.crop_size, args["cfg"]["seed"],
            tcfg.stage == 2 or model.kind == "roi", model.needs_colour, tcfg.text_crop_prob,
            device, model.kind == "taco_style",
        )  # fmt: skip
    mlog = None
    if rank == 0:
        mlog = MetricLog(args["tracking_uri"], args["mlflow_run_id"], tcfg.log_every)
    skips = SkipTally()
    start_step, latest = step, {}
    while step < total_steps:
        epoch, offset = divmod(step, tcfg.steps_per_epoch)
        tag = f"{epoch}" if offset == 0 else f"{epoch}@{step}"
        loader = make_loader(spec, tcfg.steps_per_epoch - offset, tag)
        tick = time.perf_counter()
        for batch in loader:
            faults.raise_once_at(step + 1, args["fault_train_step"], rank, args["experiment_dir"])
            losses = stepper.step(batch)
            step += 1
            now = time.perf_counter()
            latest = {METRIC_KEYS[k]: v for k, v in losses.items() if k in METRIC_KEYS}
            latest["train.lr"] = stepper.scheduler.get_last_lr()[0]
            latest["train.images_per_s"] = world * tcfg.batch_size / max(now - tick, 1e-9)
            latest["train.skipped_samples"] = skips.observe(batch)
            latest["train.text_crops"] = text_share(batch)
            val_now = tcfg.val_every > 0 and step % tcfg.val_every == 0
            if validator is not None and (val_now or step == total_steps):
                latest.update(validator.run(model))
            if rd_validator is not None and (val_now or step % tcfg.steps_per_epoch == 0):
                latest.update(rd_validator.run(model, stepper.criterion))
            tick = time.perf_counter()
            if mlog is not None:
                mlog.add(step, latest)
            if step % tcfg.checkpoint_every == 0 or step == total_steps:
                progress = {"step": step, "epoch": epoch, "resumes": resumes}
                _report(step, start_step, latest, stepper, args, progress, rank, mlog)
        skips.end_epoch()
    if step == start_step:  # relaunch of a finished run: nothing left to train
        ray.train.report({"step": step, "start_step": start_step, "resumes": len(resumes)})


def _report(step, start_step, latest, stepper, args, progress, rank, mlog) -> None:
    """All ranks call ``ray.train.report`` (a barrier); rank 0 attaches the checkpoint."""
    import ray.train
    from ray.train import Checkpoint

    if mlog is not None:
        mlog.flush()
    metrics = {k: float(v) for k, v in latest.items()}
    metrics.update(step=step, start_step=start_step, resumes=len(progress["resumes"]))
    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory(prefix="textboost-ckpt-") as d:
        write_checkpoint(d, stepper, args, progress)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))


# ---------------------------------------------------------------- the driver


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


def absolute_tracking_uri(uri: str) -> str:
    """``sqlite:///relative.db`` -> ``sqlite:////abs/relative.db`` (workers run elsewhere)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        path = Path(uri[len(prefix) :]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"{prefix}{path}"
    return uri


def open_mlflow_run(cfg: TextBoostConfig, run_name: str, tags: dict, tracking_uri: str) -> str:
    """Create the MLflow run, or reopen the one of an earlier launch with this run name."""
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import ensure_experiment

    client = MlflowClient(tracking_uri)
    exp_id = ensure_experiment(tracking_uri, cfg.mlflow.experiment)
    found = client.search_runs(
        [exp_id], filter_string=f"tags.`{TAG}ray_run_name` = '{run_name}'", max_results=1
    )
    params = {k: str(v)[:6000] for k, v in flatten(to_dict(cfg)).items()}
    if found:
        run = found[0]
        client.update_run(run.info.run_id, status="RUNNING")
        known = run.data.params
        changed = {
            f"{TAG}relaunch.{k}": v for k, v in params.items() if k in known and known[k] != v
        }
        params = {k: v for k, v in params.items() if k not in known}
        tags = {**tags, **changed}
    else:
        run = client.create_run(exp_id, run_name=run_name, tags={f"{TAG}ray_run_name": run_name})
    from mlflow.entities import Param, RunTag

    run_id = run.info.run_id
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return run_id


def _checkpoint_url(checkpoint, root: str) -> str:
    """URL of the final ``model.pt`` in the run's storage."""
    path = checkpoint.path.rstrip("/") + "/" + MODEL_FILE
    if "://" in root and "://" not in path:
        return f"{root.split('://', 1)[0]}://{path.lstrip('/')}"
    return path


def worker_init_checkpoint(init: str) -> str:
    """``train.init_checkpoint`` as the workers get it: a local path made absolute (they run in
    their own working directory); ``runs:/``, ``models:/``, URLs and ``zoo:NAME`` as given."""
    if init and ":/" not in init and not init.startswith("zoo:"):
        return os.path.abspath(init)
    return init


def init_checkpoint_tags(init: str) -> dict:
    """Lineage tags of ``train.init_checkpoint``: the URI as given and, for ``zoo:NAME``, the
    sha256 of the zoo file (an unknown name fails here, before Ray starts)."""
    if not init:
        return {}
    tags = {f"{TAG}init_checkpoint": init}
    if init.startswith("zoo:"):
        from textboost import zoo

        tags[f"{TAG}init_zoo_sha256"] = zoo.sha256(init[len("zoo:") :])
    return tags


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


def run_training(cfg: TextBoostConfig) -> dict:
    """Run one training stage on Ray Train; returns ``{"checkpoint", "run_id", ...}``."""
    from mlflow.tracking import MlflowClient
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipeline.executor import ensure_ray
    from pipeline.shards import manifest_sha256

    tcfg = cfg.train
    if tcfg.stage == 2 and not tcfg.init_checkpoint:
        raise ConfigError("train.stage=2 needs train.init_checkpoint (a stage-1 checkpoint)")
    if tcfg.checkpoint_every < 1 or tcfg.steps_per_epoch < 1 or tcfg.epochs < 1:
        raise ConfigError("train.checkpoint_every, steps_per_epoch and epochs must be >= 1")
    tracking_uri = absolute_tracking_uri(cfg.mlflow.tracking_uri)
    if tcfg.init_checkpoint:  # a bad URI fails here, once, naming what exists
        from pipeline.model_uris import check_model_uris

        init = worker_init_checkpoint(tcfg.init_checkpoint)
        check_model_uris([init], tracking_uri, "train.init_checkpoint")
    run_name, root = tcfg.run_name or unique_run_name(tcfg.stage), storage_root(tcfg)
    shards = absolute_url(tcfg.shards)  # Ray workers run in their own working directory
    urls = shard_list(shards, "train")  # validates the manifest (ShardError with what to do)
    tags = {
        f"{TAG}manifest_sha256": manifest_sha256(shards),
        f"{TAG}config_hash": config_hash(cfg),
        f"{TAG}git_commit": git_commit(),
        "mlflow.source.git.commit": git_commit(),
        f"{TAG}stage": tcfg.stage,
        f"{TAG}storage": f"{root}/{run_name}",
    }
    tags.update(init_checkpoint_tags(tcfg.init_checkpoint))
    run_id = open_mlflow_run(cfg, run_name, tags, tracking_uri)
    worker_cfg = to_dict(cfg)  # as resolved for the workers (and recorded in checkpoints)
    worker_cfg["train"].update(run_name=run_name, shards=shards, storage_path=root)
    worker_cfg["train"]["init_checkpoint"] = worker_init_checkpoint(tcfg.init_checkpoint)
    val_urls = _val_urls(shards, tcfg)
    args = {
        "cfg": worker_cfg, "urls": urls, "val_urls": val_urls, "run_name": run_name,
        "mlflow_run_id": run_id,
        "tracking_uri": tracking_uri, "experiment_dir": f"{root}/{run_name}",
        "manifest_sha": tags[f"{TAG}manifest_sha256"], "fault_train_step": faults.train_step(),
    }  # fmt: skip
    ensure_ray(cfg.ray, dashboard=True)  # Ray Train's placement-group cleaner needs it
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=args,
        torch_config=TorchConfig(backend="nccl" if tcfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=tcfg.num_workers, use_gpu=tcfg.use_gpu),
        run_config=RunConfig(
            name=run_name,
            storage_path=root,
            failure_config=FailureConfig(max_failures=tcfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=tcfg.keep_checkpoints),
        ),
    )
    client = MlflowClient(tracking_uri)
    try:
        result = trainer.fit()
        if result.checkpoint is None:
            raise CheckpointError(f"run {run_name} finished without a checkpoint")
        with result.checkpoint.as_directory() as d:
            client.log_artifact(run_id, os.path.join(d, MODEL_FILE), artifact_path="checkpoint")
            registered = None
            if tcfg.register:  # models:/<mlflow.registered_model>@trained
                import dataclasses

                from pipeline.registry import register_trained

                registered = register_trained(
                    dataclasses.replace(cfg.mlflow, tracking_uri=tracking_uri), run_id,
                    os.path.join(d, MODEL_FILE), tcfg.stage,
                    {"t_test": cfg.data.filter.t_test,
                     "side_info_format": cfg.shards.side_info_format},
                )  # fmt: skip
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    out = {
        "checkpoint": _checkpoint_url(result.checkpoint, root),
        "run_id": run_id,
        "run_name": run_name,
        "artifact_uri": f"runs:/{run_id}/checkpoint/{MODEL_FILE}",
        "metrics": dict(result.metrics or {}),
    }
    if registered is not None:
        out["registered"] = registered
    return out
