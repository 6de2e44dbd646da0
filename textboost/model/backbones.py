"""The compressai backbones of a TextBoost model and what the baselines change in them.

``build_backbone`` makes the codec named by ``model.backbone`` (ELIC, the mean-scale
hyperprior, or LIC-TCM from ``textboost.model.tcm``). The paper's comparison baselines alter its
encoder: ``widen_first_conv`` gives ``g_a`` a 4th input channel (``kind=roi``, the text
mask), ``adapter_site`` says where the TACO-style text adapter hooks in (``kind=taco_style``).
``fp32_entropy_models`` keeps the rate in float32 under bf16 autocast (``train.amp``).
"""

from __future__ import annotations

import torch
from compressai.models import CompressionModel
from torch import Tensor, nn

from textboost.config import ModelConfig


def build_backbone(model_cfg: ModelConfig) -> CompressionModel:
    """The compressai backbone named by ``model_cfg.backbone`` (random weights)."""
    if model_cfg.backbone == "elic":
        from compressai.models.sensetime import Elic2022Official

        return Elic2022Official(N=model_cfg.N, M=model_cfg.M)
    if model_cfg.backbone == "tcm":
        from textboost.model.tcm import TCM

        return TCM(model_cfg.N, model_cfg.M, model_cfg.tcm_slices, model_cfg.tcm_window)
    from compressai.models import MeanScaleHyperprior

    return MeanScaleHyperprior(N=model_cfg.N, M=model_cfg.M)


def roi_conv_key(model_cfg: ModelConfig) -> str:
    """State-dict key of the encoder's first conv (4 input channels for ``kind=roi``)."""
    return "backbone.g_a.0.weight"


def widen_first_conv(g_a: nn.Sequential, channels: int) -> None:
    """Replace ``g_a[0]`` (a conv on RGB) by the same conv on ``channels`` input channels."""
    old = g_a[0]
    if not isinstance(old, nn.Conv2d) or old.in_channels != 3:
        raise TypeError(f"the encoder's first layer is {type(old).__name__}, not a conv on RGB")
    g_a[0] = nn.Conv2d(
        channels, old.out_channels, old.kernel_size, old.stride, old.padding,
        bias=old.bias is not None,
    )  # fmt: skip


def adapter_site(g_a: nn.Sequential) -> tuple[int, int]:
    """``(index, channels)``: the layer of ``g_a`` after which the TACO-style adapter sits,
    the last one before the third stride-2 conv (1/4 resolution), and its channels."""
    convs = [i for i, m in enumerate(g_a) if isinstance(m, nn.Conv2d) and tuple(m.stride) == (2, 2)]
    if len(convs) < 3:
        raise TypeError("the encoder has fewer than 3 stride-2 convs: no adapter site")
    return convs[2] - 1, g_a[convs[2]].in_channels


def _fp32_forward(self, *args, **kwargs):
    """``forward`` of an entropy model with autocast off and float inputs in float32."""
    base = super(type(self), self).forward
    devices = {a.device.type for a in (*args, *kwargs.values()) if isinstance(a, Tensor)}
    if not any(torch.is_autocast_enabled(d) for d in devices):
        return base(*args, **kwargs)  # exactly the compressai call (fp32 runs are unchanged)
    as32 = lambda v: v.float() if isinstance(v, Tensor) and v.is_floating_point() else v  # noqa: E731
    with torch.autocast(devices.pop(), enabled=False):
        return base(*[as32(a) for a in args], **{k: as32(v) for k, v in kwargs.items()})


def fp32_entropy_models(module: nn.Module) -> nn.Module:
    """Make every compressai entropy model (``EntropyBottleneck``, ``GaussianConditional``)
    under ``module`` run in float32 even inside a bf16 ``torch.autocast`` region: the uniform
    noise, the quantisation and the likelihoods (hence the rate) are computed in fp32 from
    fp32 inputs, while the analysis / synthesis transforms around them stay in bf16. Each
    instance gets a subclass of its own class (same state dict, same methods) whose ``forward``
    turns autocast off; ``compress``/``decompress`` are untouched. Returns ``module``."""
    from compressai.entropy_models import EntropyModel

    for m in module.modules():
        if isinstance(m, EntropyModel) and not getattr(type(m), "_fp32_entropy", False):
            m.__class__ = _fp32_class(type(m))
    return module


def _fp32_class(cls: type) -> type:
    """The fp32 subclass of entropy model class ``cls`` (module-level, so pickle finds it)."""
    name = f"Fp32{cls.__name__}"
    sub = globals().get(name)
    if sub is None:
        sub = type(name, (cls,), {"forward": _fp32_forward, "_fp32_entropy": True})
        sub.__module__, sub.__qualname__ = __name__, name
        globals()[name] = sub
    return sub


def _define_fp32_classes() -> None:
    from compressai import entropy_models as em

    for cls in (em.EntropyBottleneck, em.GaussianConditional, em.GaussianMixtureConditional):
        _fp32_class(cls)


_define_fp32_classes()
