"""Training objectives (paper 4.3, Eqs. 6-8), read from the model's output dict.

Images are in [0, 1]; following compressai, the distortion term is ``λ·255²·MSE`` so that
``λ`` has the usual compressai scale (e.g. 0.0018 for the lowest ELIC rate points).

* Stage 1 (Eq. 7): ``L = bpp + λ·255²·MSE(x, x̂)``. The entropy bottleneck's auxiliary loss
  (``model.aux_loss()``) is added by the training step (``textboost.model.train_steps``).
* Stage 2 (Eq. 8): ``L = bpp̄ + λ·255²·(MSE(x, x̂) + α·L_gc)``, ``L_gc = MSE(m⊙x, m⊙x̂)``
  (Eq. 6), with ``bpp̄`` detached (constant: the rate is frozen) and α = 10 (paper 5.1.4).
* Stage 2 with ``train.gc_target=guidance`` (colour fusion): ``L_gc`` against the colour
  guidance map on the sent glyphs (``GuidanceTargetLoss``).

Every loss returns a dict: ``loss``, ``bpp_loss``, ``mse_loss``, ``gc_loss``, ``psnr``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _flat_likelihoods(likelihoods: dict) -> list[Tensor]:
    out: list[Tensor] = []
    for value in likelihoods.values():
        out.extend(_flat_likelihoods(value) if isinstance(value, dict) else [value])
    return out


def bpp_from_likelihoods(likelihoods: dict, num_pixels: int) -> Tensor:
    """Estimated bits per pixel: ``sum(-log2 p) / num_pixels`` over every latent."""
    total = sum(torch.log(lk).sum() for lk in _flat_likelihoods(likelihoods))
    return total / (-math.log(2) * num_pixels)


def psnr_from_mse(mse: Tensor) -> Tensor:
    """PSNR in dB for images in [0, 1] (inf for identical images)."""
    return -10 * torch.log10(mse)


def guidance_consistent_loss(x_hat: Tensor, target: Tensor, text_mask: Tensor) -> Tensor:
    """``L_gc = MSE(m ⊙ x, m ⊙ x̂)`` (Eq. 6); ``text_mask`` is Bx1xHxW in {0, 1}."""
    return F.mse_loss(text_mask * x_hat, text_mask * target)


class RateDistortionLoss(nn.Module):
    """Stage 1 (paper Eq. 7): ``bpp + λ·255²·MSE``; ``gc_loss`` is reported, not optimised.

    ``roi_weight`` (the ROI baseline, paper 5.2.5): the distortion term is weighted inside
    the text mask, ``mean(w ⊙ (x̂ - x)²)`` with ``w = 1 + (roi_weight - 1)·m``, so the rate
    moves to the text; ``mse_loss`` still reports the plain MSE.
    """

    def __init__(self, lmbda: float = 0.0018, roi_weight: float = 1.0):
        super().__init__()
        self.lmbda = lmbda
        self.roi_weight = roi_weight

    def forward(self, output: dict, target: Tensor, text_mask: Tensor | None = None) -> dict:
        n, _, h, w = target.shape
        bpp = bpp_from_likelihoods(output["likelihoods"], n * h * w)  # over original pixels
        mse = F.mse_loss(output["x_hat"], target)
        distortion = mse
        if self.roi_weight != 1.0 and text_mask is not None:
            weight = 1.0 + (self.roi_weight - 1.0) * text_mask.to(target.dtype)
            distortion = (weight * (output["x_hat"] - target) ** 2).mean()
        return {
            "loss": bpp + self.lmbda * 255**2 * distortion,
            "bpp_loss": bpp,
            "mse_loss": mse,
            "gc_loss": _report_gc(output, target, text_mask),
            "psnr": _psnr(output, target),
        }


class GuidanceConsistentLoss(nn.Module):
    """Stage 2 (paper Eq. 8): ``bpp̄ + λ·255²·(MSE + α·L_gc)`` with the rate held constant."""

    def __init__(self, lmbda: float = 0.0018, alpha: float = 10.0):
        super().__init__()
        self.lmbda = lmbda
        self.alpha = alpha

    def forward(
        self, output: dict, target: Tensor, text_mask: Tensor, extra: dict | None = None
    ) -> dict:
        n, _, h, w = target.shape
        bpp = bpp_from_likelihoods(output["likelihoods"], n * h * w).detach()  # bpp̄
        mse = F.mse_loss(output["x_hat"], target)
        gc = self.gc_term(output, target, text_mask, extra)
        return {
            "loss": bpp + self.lmbda * 255**2 * (mse + self.alpha * gc),
            "bpp_loss": bpp,
            "mse_loss": mse,
            "gc_loss": gc,
            "psnr": _psnr(output, target),
        }

    def gc_term(
        self, output: dict, target: Tensor, text_mask: Tensor, extra: dict | None
    ) -> Tensor:
        """``L_gc`` of Eq. 6: against the original inside the text mask."""
        return guidance_consistent_loss(output["x_hat"], target, text_mask.to(target.dtype))


def legibility_weight(guidance: Tensor, box: Tensor, ring: int = 2) -> Tensor:
    """Where the colour guidance is a target: the sent glyphs and a ``ring`` px halo around
    them, inside the word boxes (Bx1xHxW in {0, 1})."""
    ink = (guidance > 0.25).to(guidance.dtype)
    near = F.max_pool2d(ink, 2 * ring + 1, stride=1, padding=ring) if ring > 0 else ink
    return near * box


class GuidanceTargetLoss(GuidanceConsistentLoss):
    """Stage 2 with ``train.gc_target=guidance`` (colour fusion): ``L_gc`` is measured against
    the colour guidance map (the sent glyphs in the word's text colour on its background
    colour) on the glyphs and a 2 px halo, instead of against the original scene text::

        L = bpp̄ + λ·255²·(MSE(x, x̂) + α·mean(w ⊙ (x̂ - cmap)²))

    The original is written in another font, so a pixel loss against it rewards a blur; this
    target rewards drawing the sent words legibly, while the MSE term keeps the rest of the
    box (and the blend) close to the scene.
    """

    def gc_term(
        self, output: dict, target: Tensor, text_mask: Tensor, extra: dict | None
    ) -> Tensor:
        """``mean(w ⊙ (x̂ - cmap)²)`` on the sent glyphs and their halo (``extra``: guidance,
        cmap, box)."""
        weight = legibility_weight(extra["guidance"], extra["box"])
        return (weight * (output["x_hat"] - extra["cmap"]) ** 2).mean()


def build_loss(
    stage: int, lmbda: float, alpha: float = 10.0, gc_target: str = "original",
    roi_weight: float = 1.0,
) -> nn.Module:  # fmt: skip
    """The objective of ``stage`` (1: Eq. 7, with ``roi_weight`` inside the text mask; 2:
    Eq. 8, or with ``gc_target="guidance"`` ``GuidanceTargetLoss``)."""
    if stage == 1:
        return RateDistortionLoss(lmbda, roi_weight)
    if stage == 2 and gc_target == "guidance":
        return GuidanceTargetLoss(lmbda, alpha)
    if stage == 2:
        return GuidanceConsistentLoss(lmbda, alpha)
    raise ValueError(f"stage must be 1 or 2, got {stage}")


def _psnr(output: dict, target: Tensor) -> Tensor:
    with torch.no_grad():
        return psnr_from_mse(F.mse_loss(output["x_hat"].clamp(0, 1), target))


def _report_gc(output: dict, target: Tensor, text_mask: Tensor | None) -> Tensor:
    if text_mask is None:
        return target.new_zeros(())
    with torch.no_grad():
        return guidance_consistent_loss(output["x_hat"], target, text_mask.to(target.dtype))
