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

from textboost.model.losses import GuidanceTargetLoss, build_loss
from textboost.model.textboost import TextBoost


def unwrap(model: nn.Module) -> TextBoost:
    """The ``TextBoost`` inside a DDP / ``torch.compile`` wrapper (or the model itself)."""
    while not isinstance(model, TextBoost):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            raise TypeError(f"expected a TextBoost model, got {type(model).__name__}")
        model = inner
    return model


def with_fusion(model: TextBoost, model_cfg) -> TextBoost:
    """``model`` with the fusion block (or the kind) that ``model_cfg`` names: the same
    object when its config already matches, else a new model with ``model``'s backbone
    (weights and entropy tables) and a freshly initialised block. Only ``model.fusion*`` and
    the kind may differ: a TextBoost checkpoint initialises a baseline (``model.kind`` roi or
    taco_style) as exactly its backbone: the ROI encoder's mask channel starts at zero weights,
    the TACO-style adapter with a zero output projection."""
    from textboost.config import FUSION_KEYS, LATER_MODEL_KEYS, to_dict
    from textboost.model.backbones import roi_conv_key
    from textboost.model.textboost import build_model

    core = unwrap(model)
    old, new = to_dict(core.model_cfg), to_dict(model_cfg)
    if old == new:
        return model
    free = set(FUSION_KEYS) | {"kind", "text_encoder", "clip_weights", "clip_arch", "text_dim"}
    other = sorted(k for k in new if k not in free and old.get(k) != new[k])
    if other:
        diff = ", ".join(f"model.{k}: {old.get(k)!r} -> {new[k]!r}" for k in other)
        raise ValueError(
            f"training may only change the fusion block of a checkpoint, not the backbone "
            f"({diff}); set model.* to the checkpoint's values"
        )
    old_kind, new_kind = old.get("kind", LATER_MODEL_KEYS["kind"]), new["kind"]
    if old_kind != new_kind and old_kind != "textboost":
        raise ValueError(
            f"a model.kind={old_kind} checkpoint cannot become model.kind={new_kind}; start "
            "from a TextBoost (backbone) checkpoint"
        )
    out = build_model(model_cfg)
    state = out.state_dict()
    conv = roi_conv_key(model_cfg)
    # the text adapter of a TACO-style checkpoint carries over when its settings are kept
    text_kept = old_kind == new_kind and all(
        old.get(k) == new[k] for k in ("text_encoder", "clip_weights", "clip_arch", "text_dim")
    )
    for key, value in core.state_dict().items():
        if key.startswith("fusion_block."):
            continue  # a fresh block (or none)
        if key.startswith(("text_encoder.", "text_adapter.")) and not text_kept:
            continue
        if key not in state:
            raise ValueError(f"checkpoint weight {key} has no place in the new model")
        if key == conv and value.shape[1] == 3 and state[key].shape[1] == 4:
            widened = torch.zeros_like(state[key])  # the mask channel starts silent
            widened[:, :3] = value
            value = widened
        state[key] = value
    out.load_state_dict(state)
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
    gc_target: str = "original", roi_weight: float = 4.0,
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None, nn.Module]:  # fmt: skip
    """``(optimizer, aux_optimizer or None, criterion)`` for ``stage`` (call before DDP wrap
    for stage 2, so the wrapper only sees trainable fusion parameters). ``roi_weight``: the
    stage-1 distortion weight inside the text mask of a ``kind=roi`` model (others: 1)."""
    kind = unwrap(model).kind
    if stage == 2 and kind != "textboost":
        raise ValueError(f"model.kind={kind} has no fusion block: it is trained in stage 1 only")
    if gc_target == "guidance" and not unwrap(model).needs_colour:
        raise ValueError(
            "train.gc_target=guidance needs model.fusion=colour (the target is the colour "
            "guidance map)"
        )
    criterion = build_loss(stage, lmbda, alpha, gc_target, roi_weight if kind == "roi" else 1.0)
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
    text: dict | None = None,
) -> dict[str, Tensor]:
    """One optimisation step; returns the detached loss tensors (plus ``aux_loss`` in stage 1).

    ``model`` may be a DDP wrapper. Main and aux losses go through one backward pass (their
    parameters are disjoint), so DDP sees a gradient for every parameter at every step.
    ``x``: Bx3xHxW, ``guidance``: Bx1xHxW in [0, 1], ``text_mask``: Bx1xHxW in {0, 1}.
    Encoder inputs of the baselines: a ``kind=roi`` model gets ``text_mask`` as its
    ``roi_mask``, a ``kind=taco_style`` model the crops' word tokens ``text``.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    if aux_optimizer is not None:
        aux_optimizer.zero_grad(set_to_none=True)
    kind = unwrap(model).kind
    enc = {"roi_mask": text_mask} if kind == "roi" else {"text": text} if text else {}
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        if cmap is not None:
            out = model(x, guidance, cmap, box, **enc)
        else:
            out = model(x, guidance, **enc)
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
