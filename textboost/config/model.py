"""The ``model`` section (``ModelConfig``) and the model keys that make up a model's identity."""

from __future__ import annotations

from dataclasses import dataclass

from textboost.config.checks import check_choice, check_range
from textboost.errors import ConfigError

BACKBONES = ("elic", "hyperprior", "tcm")
TCM_DEFAULTS = {"tcm_slices": 5, "tcm_window": 8}  # hashed into a model identity only when changed
FUSIONS = ("paper", "colour")
FUSION_KEYS = (
    "fusion", "fusion_channels", "fusion_gated", "fusion_gate_radius", "fusion_width",
    "fusion_refine",
)  # fmt: skip
# model.kind: textboost (paper: fusion block at the decoder), or one of the paper's comparison
# baselines (5.2.5 ELIC-ROI; TACO, arXiv 2403.02944), encoder-side only, trained in stage 1
MODEL_KINDS = ("textboost", "roi", "taco_style")
TEXT_ENCODERS = ("small", "clip")
# Model keys added after models were shipped: hashed (model identity, pipeline stage keys)
# only when they differ from these defaults, so earlier models keep their identity.
BASELINE_MODEL_KEYS = {
    "kind": "textboost", "text_encoder": "small", "clip_weights": "", "clip_arch": "ViT-B-32",
    "text_dim": 64,
}  # fmt: skip
LATER_MODEL_KEYS = {"fusion_refine": 0, **TCM_DEFAULTS, **BASELINE_MODEL_KEYS}
MAX_CHANNELS = 4096


@dataclass
class ModelConfig:
    """Backbone (compressai) + fusion block (paper 4.2)."""

    # elic (Elic2022Official, paper) | hyperprior (small, CPU) | tcm (LIC-TCM, textboost.model.tcm)
    backbone: str = "elic"
    N: int = 192  # tcm: width of each branch of a TCM block (its transforms carry 2N)
    M: int = 320
    tcm_slices: int = 5  # tcm: channel slices of y (M must be divisible by it; paper: 5)
    tcm_window: int = 8  # tcm: attention window of g_a / g_s (paper: 8)
    fusion_channels: int = 13  # decoder RGB expanded to this many channels (paper: 13)
    # Fusion residual gated by the guidance map dilated by fusion_gate_radius px: an all-zero
    # guidance map then gives exactly the backbone output (paper 4.1 "degrades gracefully").
    # false: ungated residual (the fusion block then also post-filters text-free images).
    fusion_gated: bool = True
    fusion_gate_radius: int = 4
    # paper: the block of Fig. 4 on the white-on-black guidance map. colour: the encoder also
    # sends each word's text and background colour (6 bytes a word, counted in bpp) and the
    # block sees a colour guidance map (textboost.text.colours, fusion.ColourFusionBlock).
    fusion: str = "paper"
    fusion_width: int = 32  # colour block: channels of its CNN
    # colour block: width of its global refinement path (fusion.Refiner; 0 = none). Trained in
    # stage 2 with the block; it post-filters the whole image, text-free ones too.
    fusion_refine: int = 0
    # textboost: the paper's model. roi: the text mask of the sent words is a 4th input
    # channel of the encoder (paper 5.2.5, ELIC-ROI). taco_style: a text adapter in the
    # encoder (cross-attention to the sent words' tokens, TACO). Both baselines send no side
    # info and have no fusion block: the decoder is the backbone's.
    kind: str = "textboost"
    # taco_style: per-word text encoder. small: char embedding + tiny transformer, trained
    # from scratch. clip: a frozen open_clip text tower (clip_arch) from local weights.
    text_encoder: str = "small"
    clip_weights: str = ""  # text_encoder=clip: path of the open_clip weights file
    clip_arch: str = "ViT-B-32"  # text_encoder=clip: open_clip model name
    text_dim: int = 64  # taco_style: width of the word tokens and the cross-attention

    def __post_init__(self) -> None:
        self._check_kind()
        self._check_backbone()
        self._check_fusion()

    def _check_kind(self) -> None:
        """``kind`` and the text encoder of ``kind=taco_style``; what the baselines allow."""
        check_choice("model.kind", self.kind, MODEL_KINDS)
        check_choice("model.text_encoder", self.text_encoder, TEXT_ENCODERS)
        check_range("model.text_dim", self.text_dim, 8, 1024)
        if self.text_dim % 4:
            raise ConfigError(
                f"model.text_dim={self.text_dim!r} is out of range; allowed: a multiple of 4 "
                "(4 attention heads) in 8..1024"
            )
        if self.kind != "taco_style" and (self.text_encoder != "small" or self.clip_weights):
            raise ConfigError(
                "model.text_encoder / model.clip_weights configure the text adapter of "
                "model.kind=taco_style; set model.kind=taco_style or drop them"
            )
        if self.text_encoder == "clip" and not self.clip_weights:
            raise ConfigError(
                "model.text_encoder=clip needs model.clip_weights (a local open_clip weights "
                "file: CLIP is not downloaded)"
            )
        if self.kind != "textboost" and self.backbone not in ("hyperprior", "elic"):
            raise ConfigError(
                f"model.kind={self.kind} supports backbone=hyperprior or backbone=elic (its "
                f"encoder input / adapter site), not backbone={self.backbone}"
            )
        if self.kind != "textboost" and (self.fusion != "paper" or self.fusion_refine):
            raise ConfigError(
                f"model.kind={self.kind} has no fusion block; leave model.fusion / "
                "model.fusion_refine at their defaults"
            )

    def _check_backbone(self) -> None:
        """``backbone``, its widths and the TCM keys."""
        check_choice("model.backbone", self.backbone, BACKBONES)
        for key in ("N", "M", "fusion_channels"):
            check_range(f"model.{key}", getattr(self, key), 1, MAX_CHANNELS)
        if self.backbone == "elic" and self.M <= 128:
            raise ConfigError(
                "model.M must be > 128 for backbone=elic (channel groups 16,16,32,64,M-128); "
                "use e.g. model.M=192, or backbone=hyperprior for tiny models"
            )
        check_range("model.tcm_slices", self.tcm_slices, 1, 32)
        check_range("model.tcm_window", self.tcm_window, 1, 64)
        if self.backbone != "tcm":
            for key, default in TCM_DEFAULTS.items():
                if getattr(self, key) != default:
                    raise ConfigError(
                        f"model.{key} only applies to backbone=tcm (got backbone="
                        f"{self.backbone}); set model.backbone=tcm or drop model.{key}"
                    )
        elif self.M % self.tcm_slices:
            raise ConfigError(
                f"model.M={self.M} is not divisible by model.tcm_slices={self.tcm_slices}: "
                "backbone=tcm splits the latent into equal slices; use e.g. "
                f"model.M={self.M - self.M % self.tcm_slices + self.tcm_slices}"
            )

    def _check_fusion(self) -> None:
        """The fusion block's keys."""
        check_range("model.fusion_gate_radius", self.fusion_gate_radius, 0, 255)
        check_choice("model.fusion", self.fusion, FUSIONS)
        check_range("model.fusion_width", self.fusion_width, 1, MAX_CHANNELS)
        check_range("model.fusion_refine", self.fusion_refine, 0, MAX_CHANNELS)
        if self.fusion_refine and self.fusion != "colour":
            raise ConfigError(
                "model.fusion_refine needs model.fusion=colour (the refinement path is part of "
                "the colour block); set model.fusion=colour or model.fusion_refine=0"
            )
