"""Two-stage training helpers (paper 4.3, 5.1.4): optimizers, stage-2 freezing, one step.

* Stage 1: the whole model is trained with the rate-distortion loss (Eq. 7); Adam for the
  network and a second Adam for the entropy bottleneck's ``quantiles`` (compressai aux loss).
* Stage 2: encoder, entropy models and decoder base (the whole backbone) are frozen:
  ``requires_grad=False`` and kept in eval mode, so ``x_base`` and the rate are exactly what
  the real decoder produces and cannot change. Only the fusion block is optimised (Eq. 8).
  compressai's ``net_aux_optimizer`` asserts that every parameter is trainable, so the
  stage-2 optimizer is built directly over the fusion block's parameters.

Functions accept a DDP-wrapped model too (they use ``model.module`` when present).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from textboost.losses import GuidanceTargetLoss, build_loss
from textboost.model import TextBoost


def unwrap(model: nn.Module) -> TextBoost:
    """The ``TextBoost`` inside a DDP / ``torch.compile`` wrapper (or the model itself)."""
    while not isinstance(model, TextBoost):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            raise TypeError(f"expected a TextBoost model, got {type(model).__name__}")
        model = inner
    return model


def with_fusion(model: TextBoost, model_cfg) -> TextBoost:
    """``model`` with the fusion block that ``model_cfg`` names: the same object when its
    fusion settings already match, else a new model with ``model``'s backbone (weights and
    entropy tables) and a freshly initialised block. Only ``model.fusion*`` may differ."""
    from textboost.config import FUSION_KEYS, to_dict
    from textboost.model import build_model

    old, new = to_dict(unwrap(model).model_cfg), to_dict(model_cfg)
    if old == new:
        return model
    other = sorted(k for k in new if k not in FUSION_KEYS and old.get(k) != new[k])
    if other:
        diff = ", ".join(f"model.{k}: {old.get(k)!r} -> {new[k]!r}" for k in other)
        raise ValueError(
            f"training may only change the fusion block of a checkpoint, not the backbone "
            f"({diff}); set model.* to the checkpoint's values"
        )
    out = build_model(model_cfg)
    out.backbone.load_state_dict(unwrap(model).backbone.state_dict())
    return out


def freeze_for_stage2(model: nn.Module) -> list[nn.Parameter]:
    """Freeze the backbone (paper 4.3) and return the fusion block's parameters."""
    core = unwrap(model)
    for p in core.backbone_parameters():
        p.requires_grad_(False)
    for p in core.fusion_parameters():
        p.requires_grad_(True)
    core.backbone_frozen = True
    core.backbone.eval()  # stays in eval mode through later model.train() calls
    return core.fusion_parameters()


def build_stage1_optimizers(
    model: nn.Module, lr: float = 1e-4, aux_lr: float = 1e-3
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam over all network parameters, and Adam over the entropy bottlenecks' quantiles."""
    core = unwrap(model)
    main = [p for n, p in core.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in core.named_parameters() if n.endswith(".quantiles")]
    return torch.optim.Adam(main, lr=lr), torch.optim.Adam(aux, lr=aux_lr)


def build_stage2_optimizer(model: nn.Module, lr: float = 1e-3) -> torch.optim.Optimizer:
    """Freeze the backbone and return Adam over the fusion block only (paper 5.1.4: 1e-3)."""
    params = freeze_for_stage2(model)
    return torch.optim.Adam(params, lr=lr)


def prepare_stage(
    model: nn.Module, stage: int, lr: float, aux_lr: float, lmbda: float, alpha: float = 10.0,
    gc_target: str = "original",
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None, nn.Module]:  # fmt: skip
    """``(optimizer, aux_optimizer or None, criterion)`` for ``stage`` (call before DDP wrap
    for stage 2, so the wrapper only sees trainable fusion parameters)."""
    if gc_target == "guidance" and not unwrap(model).needs_colour:
        raise ValueError(
            "train.gc_target=guidance needs model.fusion=colour (the target is the colour "
            "guidance map)"
        )
    criterion = build_loss(stage, lmbda, alpha, gc_target)
    if stage == 1:
        optimizer, aux_optimizer = build_stage1_optimizers(model, lr, aux_lr)
        return optimizer, aux_optimizer, criterion
    return build_stage2_optimizer(model, lr), None, criterion


def train_step(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    aux_optimizer: torch.optim.Optimizer | None,
    x: Tensor,
    guidance: Tensor,
    text_mask: Tensor,
    clip_max_norm: float = 1.0,
    bf16: bool = False,
    cmap: Tensor | None = None,
    box: Tensor | None = None,
) -> dict[str, Tensor]:
    """One optimisation step; returns the detached loss tensors (plus ``aux_loss`` in stage 1).

    ``model`` may be a DDP wrapper. Main and aux losses go through one backward pass (their
    parameters are disjoint), so DDP sees a gradient for every parameter at every step.
    ``x``: Bx3xHxW, ``guidance``: Bx1xHxW in [0, 1], ``text_mask``: Bx1xHxW in {0, 1}.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    if aux_optimizer is not None:
        aux_optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x, guidance, cmap, box) if cmap is not None else model(x, guidance)
    if bf16:
        out = {k: _to_float32(v) for k, v in out.items()}
    if isinstance(criterion, GuidanceTargetLoss):
        extra = {"guidance": guidance, "cmap": cmap, "box": box}
        losses = criterion(out, x, text_mask, extra)
    else:
        losses = criterion(out, x, text_mask)
    total = losses["loss"]
    if aux_optimizer is not None:
        losses["aux_loss"] = unwrap(model).aux_loss()
        total = total + losses["aux_loss"]
    total.backward()
    if clip_max_norm > 0:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip_max_norm)
    optimizer.step()
    if aux_optimizer is not None:
        aux_optimizer.step()
    return {k: v.detach() for k, v in losses.items()}


def _to_float32(value):
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_float32(v) for v in value)
    return value
