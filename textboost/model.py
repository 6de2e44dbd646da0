"""TextBoost model: a compressai backbone plus the fusion block (paper 4.2, Fig. 2).

``TextBoost`` keeps the compressai contract: ``forward(x, guidance)`` returns a dict with
``x_hat`` (fused), ``x_base`` (backbone decoder output) and ``likelihoods``; ``compress(x)``
returns latent ``strings`` and ``shape``; ``decompress(strings, shape, guidance)`` decodes.
The encoder never sees the guidance map: it only steers the decoder.

Padding: the backbones need H and W divisible by 64 (ELIC: 4 stride-2 analysis layers plus
2 in the hyper-analysis). Images are padded (replicate) with the offsets of
``padding_for(h, w)``; the backbone output is cropped back with the same offsets *before* the
fusion block, so the guidance map is always used at the image's own resolution and can never
be misaligned with it. The rate (bpp) is counted over the original pixel count (losses).
``decompress`` feeds the fusion block the same unclamped ``x_base`` as ``forward`` in eval
mode, so a decoded image equals the eval-mode forward output (measured: bit-identical).
"""

from __future__ import annotations

import hashlib
import json

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel
from torch import Tensor, nn

from textboost.config import TCM_DEFAULTS, ModelConfig, to_dict
from textboost.fusion import ColourFusionBlock, FusionBlock

# model.* keys added after models shipped, with their defaults: hashed into ``identity`` only
# when set otherwise, so every earlier model (zoo cards, containers) keeps its identity
LATER_KEYS = {"fusion_refine": 0, **TCM_DEFAULTS}

PAD_MULTIPLE = 64

Padding = tuple[int, int, int, int]  # (left, right, top, bottom), F.pad order


def padding_for(height: int, width: int, multiple: int = PAD_MULTIPLE) -> Padding:
    """Symmetric padding that brings ``height`` x ``width`` up to multiples of ``multiple``."""
    new_h = (height + multiple - 1) // multiple * multiple
    new_w = (width + multiple - 1) // multiple * multiple
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return (left, new_w - width - left, top, new_h - height - top)


def pad(x: Tensor, multiple: int = PAD_MULTIPLE, mode: str = "replicate") -> tuple[Tensor, Padding]:
    """Pad BxCxHxW to multiples of ``multiple``; returns the padded tensor and its offsets.

    Use the same offsets for an image and its guidance map (``mode="constant"`` for the map).
    """
    padding = padding_for(x.shape[-2], x.shape[-1], multiple)
    if not any(padding):
        return x, padding
    return F.pad(x, padding, mode=mode), padding


def crop(x: Tensor, padding: Padding) -> Tensor:
    """Undo ``pad``: remove ``(left, right, top, bottom)`` from the last two dims."""
    left, right, top, bottom = padding
    h, w = x.shape[-2], x.shape[-1]
    return x[..., top : h - bottom, left : w - right]


def build_backbone(model_cfg: ModelConfig) -> CompressionModel:
    """The compressai backbone named by ``model_cfg.backbone`` (random weights)."""
    if model_cfg.backbone == "elic":
        from compressai.models.sensetime import Elic2022Official

        return Elic2022Official(N=model_cfg.N, M=model_cfg.M)
    if model_cfg.backbone == "tcm":
        from textboost.tcm import TCM

        return TCM(model_cfg.N, model_cfg.M, model_cfg.tcm_slices, model_cfg.tcm_window)
    from compressai.models import MeanScaleHyperprior

    return MeanScaleHyperprior(N=model_cfg.N, M=model_cfg.M)


def build_fusion(model_cfg: ModelConfig) -> nn.Module:
    """The fusion block named by ``model_cfg.fusion`` (paper Fig. 4, or the colour block)."""
    if model_cfg.fusion == "colour":
        return ColourFusionBlock(
            model_cfg.fusion_width, model_cfg.fusion_gate_radius, model_cfg.fusion_refine
        )
    return FusionBlock(
        model_cfg.fusion_channels, model_cfg.fusion_gated, model_cfg.fusion_gate_radius
    )


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


class TextBoost(CompressionModel):
    """Backbone codec + attention-guided fusion block (paper 4.2).

    Inherits compressai's ``CompressionModel`` for ``update``, ``aux_loss`` and a
    ``load_state_dict`` that resizes the entropy models' CDF buffers.
    """

    def __init__(self, model_cfg: ModelConfig):
        super().__init__()
        self.model_cfg = model_cfg
        self.backbone = fp32_entropy_models(build_backbone(model_cfg))  # bf16: rate in fp32
        self.fusion_block = build_fusion(model_cfg)
        self.backbone_frozen = False  # set by textboost.stages.freeze_for_stage2
        self._identity_cache: tuple[tuple, str] | None = None
        self._updated_key: tuple | None = None

    # --- compressai contract -------------------------------------------------------------
    @property
    def needs_colour(self) -> bool:
        """Whether the fusion block uses the word colours (``model.fusion=colour``)."""
        return bool(getattr(self.fusion_block, "needs_colour", False))

    def fuse(
        self, x_base: Tensor, guidance: Tensor | None, cmap: Tensor | None = None,
        box: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """The fusion block on ``x_base`` (the colour block also takes ``cmap`` and ``box``)."""
        if self.needs_colour:
            return self.fusion_block(x_base, guidance, cmap, box)
        return self.fusion_block(x_base, guidance)

    def forward(
        self, x: Tensor, guidance: Tensor | None = None, cmap: Tensor | None = None,
        box: Tensor | None = None,
    ) -> dict:  # fmt: skip
        """``x``: Bx3xHxW in [0, 1]; ``guidance``: Bx1xHxW in [0, 1] (None = no words);
        ``cmap`` Bx3xHxW in [0, 1] and ``box`` Bx1xHxW: colour guidance (colour block only)."""
        x_pad, padding = pad(x)  # Bx3xH'xW', H', W' multiples of 64
        out = self.backbone(x_pad)
        x_base = crop(out["x_hat"], padding)  # Bx3xHxW
        x_hat = self.fuse(x_base, guidance, cmap, box)  # Bx3xHxW
        return {"x_hat": x_hat, "x_base": x_base, "likelihoods": out["likelihoods"]}

    def compress(self, x: Tensor) -> dict:
        """Entropy-code ``x`` (Bx3xHxW); the guidance map is not needed to encode."""
        x_pad, padding = pad(x)
        out = self.backbone.compress(x_pad)
        return {
            "strings": out["strings"],
            "shape": out["shape"],
            "size": tuple(x.shape[-2:]),
            "padding": padding,
        }

    def decompress(
        self,
        strings: list,
        shape,
        guidance: Tensor | None = None,
        size: tuple[int, int] | None = None,
        cmap: Tensor | None = None,
        box: Tensor | None = None,
    ) -> dict:
        """Decode strings into ``x_hat`` (fused, clamped) and ``x_base``; the image size comes
        from ``guidance`` (Bx1xHxW) or ``size`` (H, W)."""
        if size is None:
            if guidance is None:
                raise ValueError("decompress needs the guidance map or the image size")
            size = (guidance.shape[-2], guidance.shape[-1])
        padding = padding_for(*size)
        x_base = crop(self._decode_base(strings, shape), padding)  # Bx3xHxW
        guidance, cmap, box = (
            None if t is None else t.to(x_base.device) for t in (guidance, cmap, box)
        )
        x_hat = self.fuse(x_base, guidance, cmap, box).clamp(0, 1)
        return {"x_hat": x_hat, "x_base": x_base.clamp(0, 1)}

    def _decode_base(self, strings: list, shape) -> Tensor:
        """Backbone decoder output *before* clamping (compressai's ``decompress`` clamps), so
        the fusion block sees the same ``x_base`` as in ``forward`` (eval mode)."""
        bb = self.backbone
        if self.model_cfg.backbone == "elic":
            y_hat = bb.latent_codec.decompress(strings, shape)["y_hat"]
        elif self.model_cfg.backbone == "tcm":
            return bb.decode_unclamped(strings, shape)  # checks the number of string lists
        else:  # MeanScaleHyperprior.decompress without the final clamp
            if len(strings) != 2:
                raise ValueError(f"hyperprior expects 2 string lists, got {len(strings)}")
            z_hat = bb.entropy_bottleneck.decompress(strings[1], shape)
            scales_hat, means_hat = bb.h_s(z_hat).chunk(2, 1)
            indexes = bb.gaussian_conditional.build_indexes(scales_hat)
            y_hat = bb.gaussian_conditional.decompress(strings[0], indexes, means=means_hat)
        return bb.g_s(y_hat)  # Bx3xH'xW'

    def train(self, mode: bool = True) -> TextBoost:
        """Like ``nn.Module.train``, but a frozen backbone (stage 2) always stays in eval mode."""
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    # --- latent layout, used by the codec container --------------------------------------
    def latent_shape(self, padded_h: int, padded_w: int):
        """The ``shape`` that ``compress`` returns for a padded ``padded_h`` x ``padded_w``."""
        hyper = torch.Size((padded_h // 64, padded_w // 64))
        if self.model_cfg.backbone == "elic":
            h, w = padded_h // 16, padded_w // 16
            return {"y": [torch.Size((g, h, w)) for g in self.backbone.groups], "hyper": hyper}
        return hyper

    @property
    def num_string_lists(self) -> int:
        """Number of latent string lists per image (ELIC: 2 per channel group + z; TCM: one
        per slice + z)."""
        if self.model_cfg.backbone == "elic":
            return 2 * len(self.backbone.groups) + 1
        if self.model_cfg.backbone == "tcm":
            return self.backbone.num_slices + 1
        return 2

    # --- parameter groups ------------------------------------------------------------------
    def backbone_parameters(self) -> list[nn.Parameter]:
        """Encoder, entropy models and decoder base (frozen in stage 2, paper 4.3)."""
        return list(self.backbone.parameters())

    def fusion_parameters(self) -> list[nn.Parameter]:
        """The fusion block (the only trainable part in stage 2)."""
        return list(self.fusion_block.parameters())

    def parameter_groups(self) -> dict[str, list[str]]:
        """Parameter names per group: ``{"backbone": [...], "fusion": [...]}``."""
        groups: dict[str, list[str]] = {"backbone": [], "fusion": []}
        for name, _ in self.named_parameters():
            groups["fusion" if name.startswith("fusion_block.") else "backbone"].append(name)
        return groups

    # --- identity and entropy tables -------------------------------------------------------
    def _version_key(self) -> tuple:
        # In-place updates (optimizer steps, load_state_dict) bump a tensor's _version.
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def identity(self) -> str:
        """16 hex chars (64 bits): sha256 prefix of the model config and every parameter
        (name, dtype, shape, bytes). Containers record it, so a file is only decoded by the
        model that wrote it; checkpoints record it to detect damaged weights."""
        key = self._version_key()
        if self._identity_cache is not None and self._identity_cache[0] == key:
            return self._identity_cache[1]
        h = hashlib.sha256()
        cfg = to_dict(self.model_cfg)
        for key, default in LATER_KEYS.items():  # hashed only when set, so models trained
            if cfg.get(key) == default:  # before a key existed keep their identity
                cfg.pop(key, None)
        h.update(json.dumps(cfg, sort_keys=True).encode())
        for name, p in sorted(self.named_parameters()):
            t = p.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
        digest = h.hexdigest()[:16]
        self._identity_cache = (key, digest)
        return digest

    def ensure_updated(self) -> None:
        """``update(force=True)`` (entropy-model CDF tables) unless the weights are unchanged
        since the last update or since the tables were loaded from a checkpoint."""
        key = self._version_key()
        if self._updated_key != key:
            # Never under inference mode: CDF buffers made there could not be loaded into or
            # resized later (inference tensors refuse in-place updates outside it).
            with torch.inference_mode(False), torch.no_grad():
                self.update(force=True)
            self._updated_key = key

    def mark_updated(self) -> None:
        """Record that the current CDF tables match the current weights (after loading)."""
        self._updated_key = self._version_key()


def build_model(model_cfg: ModelConfig) -> TextBoost:
    """A randomly initialised ``TextBoost`` for ``model_cfg`` (paper 4.2)."""
    return TextBoost(model_cfg)
