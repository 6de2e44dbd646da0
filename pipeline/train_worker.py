"""One DDP rank of a training run (a Ray Train worker): ``train_loop_per_worker``.

A rank builds its model (the run's latest checkpoint, the init checkpoint or a fresh one;
stage 2 freezes the backbone), wraps it in DDP with ``ray.train.torch.prepare_model``, reads
crops from the webdataset loader, and every ``train.checkpoint_every`` steps reports a
checkpoint (rank 0 writes it). Rank 0 also validates and logs the metrics to MLflow.

Resumption: after a restart the rank reloads model, optimizers, LR schedule and step from
the latest checkpoint; the data stream after a mid-epoch resume is a fresh deterministic draw
seeded by (seed, epoch, resume step, rank).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from pipeline import faults
from pipeline.crops import text_share
from pipeline.loader import LoaderSpec, SkipTally, derive_seed, make_loader
from pipeline.train_checkpoint import initial_model, write_checkpoint
from pipeline.train_step import Stepper, restore
from pipeline.train_tracking import METRIC_KEYS, MetricLog
from textboost.config import TrainConfig, section_from_dict

if TYPE_CHECKING:
    from pipeline.validation import RDValidator, Validator


@dataclass(frozen=True)
class WorkerArgs:
    """What the driver (``pipeline.training.run_training``) hands every rank.

    Ray Train takes it as ``train_loop_config``, a plain dict (``to_config``; Ray records it
    with the run's settings), and the rank reads it back with ``from_config``.
    """

    cfg: dict  # the run's config as resolved for the workers (recorded in checkpoints)
    urls: tuple[str, ...]  # train shards
    val_urls: tuple[str, ...]  # val shards, when a validation needs them
    run_name: str  # Ray Train's run name (also cfg["train"]["run_name"])
    mlflow_run_id: str
    tracking_uri: str  # absolute: the workers run in their own folders
    experiment_dir: str  # the run's storage folder (the fault marker lives there)
    manifest_sha: str  # sha256 of the train shards' manifest.json
    fault_train_step: int  # pipeline.faults.train_step(): -1, or the step that raises once

    @property
    def train(self) -> TrainConfig:
        return section_from_dict(TrainConfig, self.cfg["train"])

    @property
    def seed(self) -> int:
        return self.cfg["seed"]

    def to_config(self) -> dict:
        """Plain data for Ray Train (lists, not tuples)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_config(cls, config: dict) -> WorkerArgs:
        urls, val_urls = tuple(config["urls"]), tuple(config["val_urls"])
        return cls(**{**config, "urls": urls, "val_urls": val_urls})


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


@dataclass
class RankRun:
    """One rank's training state, built by ``start_rank``."""

    args: WorkerArgs
    tcfg: TrainConfig
    rank: int
    world: int
    stepper: Stepper
    spec: LoaderSpec
    total_steps: int
    start_step: int
    resumes: list[int]
    validator: Validator | None = None  # rank 0, stage 2: F1 on val images
    rd_validator: RDValidator | None = None  # rank 0: loss, bpp and PSNR on fixed val crops
    mlog: MetricLog | None = None  # rank 0
    skips: SkipTally = dataclasses.field(default_factory=SkipTally)


def train_loop_per_worker(config: dict) -> None:
    """One DDP rank (Ray Train worker). ``config``: a ``WorkerArgs.to_config()``."""
    import ray.train

    run = start_rank(WorkerArgs.from_config(config))
    step = run.start_step
    while step < run.total_steps:
        step = run_epoch(run, step)
    if step == run.start_step:  # relaunch of a finished run: nothing left to train
        ray.train.report({"step": step, "start_step": run.start_step, "resumes": len(run.resumes)})


def start_rank(args: WorkerArgs) -> RankRun:
    """Model (restored, DDP-wrapped), optimizers, noise seed, loader spec, validators, metrics."""
    import ray.train
    import ray.train.torch

    tcfg = args.train
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    total_steps = tcfg.epochs * tcfg.steps_per_epoch
    model, state = initial_model(args.cfg, tcfg, args.tracking_uri)
    stepper = Stepper(model, tcfg, device, total_steps)  # stage 2: freezes the backbone
    restore(stepper, state, device)
    step = int(state["step"]) if state else 0
    resumes = list(state["resumes"]) + [step] if state else []
    # DDP over the trainable parameters. Buffers are not broadcast: nothing trains them, and
    # rank 0 refreshes the entropy models' CDF tables when it saves a checkpoint.
    stepper.net = ray.train.torch.prepare_model(
        model, parallel_strategy_kwargs={"forward_sync_buffers": False}
    )
    torch.manual_seed(derive_seed(args.seed, "noise", rank, step))
    spec = LoaderSpec(
        urls=list(args.urls), batch_size=tcfg.batch_size, crop_size=tcfg.crop_size,
        seed=args.seed, rank=rank, world_size=world,
        num_workers=tcfg.loader_workers, pin_memory=tcfg.use_gpu,
        with_mask=tcfg.stage == 2 or model.kind == "roi",  # L_gc, or the ROI encoder input
        with_colour=model.needs_colour, with_text=model.kind == "taco_style",
        text_crop_prob=tcfg.text_crop_prob, shuffle_buffer=tcfg.shuffle_buffer,
    )  # fmt: skip
    run = RankRun(args, tcfg, rank, world, stepper, spec, total_steps, step, resumes)
    if rank == 0:
        _add_rank0_tools(run, device)
    return run


def _add_rank0_tools(run: RankRun, device: torch.device) -> None:
    """Rank 0's validators (when configured) and MLflow metric log."""
    tcfg, args, model = run.tcfg, run.args, run.stepper.model
    val_urls = list(args.val_urls)
    if tcfg.stage == 2 and tcfg.val_every > 0:
        from pipeline.validation import Validator

        run.validator = Validator(val_urls, tcfg.val_images, model.needs_colour)
    if tcfg.val_crops > 0 and val_urls:
        from pipeline.validation import RDValidator

        run.rd_validator = RDValidator(
            val_urls, tcfg.val_crops, tcfg.crop_size, args.seed,
            tcfg.stage == 2 or model.kind == "roi", model.needs_colour, tcfg.text_crop_prob,
            device, model.kind == "taco_style",
        )  # fmt: skip
    run.mlog = MetricLog(args.tracking_uri, args.mlflow_run_id, tcfg.log_every)


def run_epoch(run: RankRun, step: int) -> int:
    """Train from ``step`` to the end of its epoch (reporting checkpoints); returns the step."""
    tcfg, args = run.tcfg, run.args
    epoch, offset = divmod(step, tcfg.steps_per_epoch)
    tag = f"{epoch}" if offset == 0 else f"{epoch}@{step}"
    loader = make_loader(run.spec, tcfg.steps_per_epoch - offset, tag)
    tick = time.perf_counter()
    for batch in loader:
        faults.raise_once_at(step + 1, args.fault_train_step, run.rank, args.experiment_dir)
        losses = run.stepper.step(batch)
        step += 1
        latest = _step_metrics(run, batch, losses, time.perf_counter() - tick)
        _validate(run, step, latest)
        tick = time.perf_counter()
        if run.mlog is not None:
            run.mlog.add(step, latest)
        if step % tcfg.checkpoint_every == 0 or step == run.total_steps:
            progress = {"step": step, "epoch": epoch, "resumes": run.resumes}
            _report(run, step, latest, progress)
    run.skips.end_epoch()
    return step


def _step_metrics(run: RankRun, batch: dict, losses: dict, seconds: float) -> dict:
    """The step's metrics (MLflow names): losses, LR, throughput, skipped samples, text share."""
    latest = {METRIC_KEYS[k]: v for k, v in losses.items() if k in METRIC_KEYS}
    latest["train.lr"] = run.stepper.scheduler.get_last_lr()[0]
    latest["train.images_per_s"] = run.world * run.tcfg.batch_size / max(seconds, 1e-9)
    latest["train.skipped_samples"] = run.skips.observe(batch)
    latest["train.text_crops"] = text_share(batch)
    return latest


def _validate(run: RankRun, step: int, latest: dict) -> None:
    """Rank 0's validations due at ``step``, their metrics added to ``latest``."""
    tcfg, model = run.tcfg, run.stepper.model
    val_now = tcfg.val_every > 0 and step % tcfg.val_every == 0
    if run.validator is not None and (val_now or step == run.total_steps):
        latest.update(run.validator.run(model))
    if run.rd_validator is not None and (val_now or step % tcfg.steps_per_epoch == 0):
        latest.update(run.rd_validator.run(model, run.stepper.criterion))


def _report(run: RankRun, step: int, latest: dict, progress: dict) -> None:
    """All ranks call ``ray.train.report`` (a barrier); rank 0 attaches the checkpoint."""
    import ray.train
    from ray.train import Checkpoint

    if run.mlog is not None:
        run.mlog.flush()
    metrics = {k: float(v) for k, v in latest.items()}
    metrics.update(step=step, start_step=run.start_step, resumes=len(progress["resumes"]))
    if run.rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory(prefix="textboost-ckpt-") as d:
        write_checkpoint(d, run.stepper, run.args.cfg, run.args.manifest_sha, progress)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
