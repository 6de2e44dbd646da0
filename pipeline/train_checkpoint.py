"""Checkpoint I/O of a training run: what a rank saves, what it starts from, where it lands.

A Ray Train checkpoint is a folder with ``model.pt`` (``textboost.model.checkpoint`` format) and
``trainer_state.pt`` (optimizers, LR schedule, step, epoch, resume steps). A rank starts
from the run's latest checkpoint (a restart or relaunch), else from
``train.init_checkpoint`` (stage 2, or a stage-1 fine-tune), else from a fresh model.
"""

from __future__ import annotations

import os

import torch

from pipeline.tracking import TAG
from pipeline.train_step import Stepper
from textboost.config import ModelConfig, TrainConfig, section_from_dict
from textboost.errors import ConfigError

MODEL_FILE = "model.pt"
STATE_FILE = "trainer_state.pt"


def write_checkpoint(
    directory: str, stepper: Stepper, run_cfg: dict, manifest_sha: str, progress: dict
) -> None:
    """``model.pt`` (textboost.model.checkpoint format) and ``trainer_state.pt`` into ``directory``."""
    from textboost.model.checkpoint import save_checkpoint

    model_cfg = section_from_dict(ModelConfig, run_cfg["model"])
    save_checkpoint(
        os.path.join(directory, MODEL_FILE),
        stepper.model,
        model_cfg,
        run_cfg,
        manifest_sha,
        stepper.stage,
    )
    torch.save({**stepper.state_dict(), **progress}, os.path.join(directory, STATE_FILE))


def initial_model(run_cfg: dict, tcfg: TrainConfig, tracking_uri: str):
    """(model, trainer state or None): from the run's latest checkpoint, the stage-2 init
    checkpoint, or a fresh model (stage 1)."""
    import ray.train

    from textboost.model import build_model
    from textboost.model.checkpoint import load_checkpoint

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

        mlflow.set_tracking_uri(tracking_uri)  # for runs:/ and models:/ URIs
        model, _ = load_checkpoint(tcfg.init_checkpoint)
        from textboost.model.train_steps import with_fusion

        torch.manual_seed(run_cfg["seed"])  # the same fresh block (if any) on every rank
        try:  # another fusion block on the same backbone: a new block, the backbone's weights
            model = with_fusion(model, section_from_dict(ModelConfig, run_cfg["model"]))
        except ValueError as exc:
            raise ConfigError(f"train.init_checkpoint {tcfg.init_checkpoint}: {exc}") from None
        return model, None
    torch.manual_seed(run_cfg["seed"])  # same initial weights on every rank
    return build_model(section_from_dict(ModelConfig, run_cfg["model"])), None


def checkpoint_url(checkpoint, root: str) -> str:
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
