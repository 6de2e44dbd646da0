"""One optimisation step of a training stage: model, optimizers, LR schedule and loss.

``Stepper`` runs one update on a loader batch; ``lr_factor`` is its LR schedule (linear
warmup, then cosine or constant); ``restore`` puts a resumed run's trainer state back.
"""

from __future__ import annotations

import math

import torch

from pipeline.crops import to_float
from textboost.config import TrainConfig


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
        from textboost.model.train_steps import prepare_stage

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
        from textboost.model.train_steps import train_step

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
