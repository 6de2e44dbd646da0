"""TextBoost model: a compressai backbone plus the fusion block (paper 4.2, Fig. 2).

``TextBoost`` keeps the compressai contract: ``forward(x, guidance)`` returns a dict with
``x_hat`` (fused), ``x_base`` (backbone decoder output) and ``likelihoods``; ``compress(x)``
returns latent ``strings`` and ``shape``; ``decompress(strings, shape, guidance)`` decodes.
The encoder never sees the guidance map: it only steers the decoder.

``model.kind`` selects the paper's comparison baselines (encoder-side text, no fusion block,
the decoder is the backbone's and never reads text): ``roi`` (paper 5.2.5, ELIC-ROI) feeds
the text mask of the sent words to the encoder as a 4th input channel (``roi_mask``);
``taco_style`` (TACO) lets ``g_a``'s features cross-attend to the sent words' tokens
(``text``, ``textboost.model.text_adapter``) after its second downsampling stage.

The backbone (``textboost.model.backbones``) runs on the image padded to multiples of 64 and its
output is cropped back before the fusion block (``textboost.model.padding``), so the guidance map
is always used at the image's own resolution. ``decompress`` feeds the fusion block the same
unclamped ``x_base`` as ``forward`` in eval mode, so a decoded image equals the eval-mode
forward output (measured: bit-identical).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel
from torch import Tensor, nn

from textboost.config import ModelConfig, model_key
from textboost.model.backbones import (
    adapter_site,
    build_backbone,
    fp32_entropy_models,
    widen_first_conv,
)
from textboost.model.fusion import ColourFusionBlock, FusionBlock
from textboost.model.padding import Padding, crop, pad, padding_for

if TYPE_CHECKING:
    from collections.abc import Iterator


def build_fusion(model_cfg: ModelConfig) -> nn.Module:
    """The fusion block named by ``model_cfg.fusion`` (paper Fig. 4, or the colour block)."""
    if model_cfg.fusion == "colour":
        return ColourFusionBlock(
            model_cfg.fusion_width, model_cfg.fusion_gate_radius, model_cfg.fusion_refine
        )
    return FusionBlock(
        model_cfg.fusion_channels, model_cfg.fusion_gated, model_cfg.fusion_gate_radius
    )


class TextBoost(CompressionModel):
    """Backbone codec + attention-guided fusion block (paper 4.2).

    Inherits compressai's ``CompressionModel`` for ``update``, ``aux_loss`` and a
    ``load_state_dict`` that resizes the entropy models' CDF buffers.
    """

    def __init__(self, model_cfg: ModelConfig):
        super().__init__()
        self.model_cfg = model_cfg
        self.kind = model_cfg.kind
        self.backbone = fp32_entropy_models(build_backbone(model_cfg))  # bf16: rate in fp32
        if self.kind == "roi":
            widen_first_conv(self.backbone.g_a, 4)
        # the baselines decode with the backbone alone: no fusion block (no parameters)
        self.fusion_block = build_fusion(model_cfg) if self.kind == "textboost" else nn.Identity()
        self._text_ctx: dict | None = None
        if self.kind == "taco_style":
            from textboost.model.text_adapter import TextAdapter, build_text_encoder

            site, channels = adapter_site(self.backbone.g_a)
            self.text_encoder = build_text_encoder(model_cfg)
            self.text_adapter = TextAdapter(channels, model_cfg.text_dim)
            self.backbone.g_a[site].register_forward_hook(self._adapter_hook)
        self.backbone_frozen = False  # set by textboost.model.train_steps.freeze_for_stage2
        self._identity_cache: tuple[tuple, str] | None = None
        self._updated_key: tuple | None = None

    # --- compressai contract -------------------------------------------------------------
    @property
    def needs_colour(self) -> bool:
        """Whether the fusion block uses the word colours (``model.fusion=colour``)."""
        return bool(getattr(self.fusion_block, "needs_colour", False))

    @property
    def method(self) -> str:
        """The evaluation row of this model's own reconstruction: ``textboost``, ``roi`` or
        ``taco_style``."""
        return self.kind

    @property
    def encoder_input(self) -> str | None:
        """What the encoder takes besides the image: ``roi_mask`` (kind=roi), ``text``
        (kind=taco_style) or None (TextBoost: the words only reach the decoder)."""
        return {"roi": "roi_mask", "taco_style": "text"}.get(self.kind)

    def _encoder_image(self, x_pad: Tensor, padding: Padding, roi_mask: Tensor | None) -> Tensor:
        """The backbone's input: the padded image, plus (kind=roi) the padded text mask."""
        if self.kind != "roi":
            return x_pad
        if roi_mask is None:
            return torch.cat([x_pad, x_pad.new_zeros((x_pad.shape[0], 1, *x_pad.shape[2:]))], 1)
        roi_mask = roi_mask.to(x_pad.device, x_pad.dtype)
        if any(padding):
            roi_mask = F.pad(roi_mask, padding, mode="constant")
        return torch.cat([x_pad, roi_mask], 1)

    @contextlib.contextmanager
    def _text_context(self, text: dict | None, padding: Padding, size, padded) -> Iterator:
        """While the backbone's encoder runs: the word tokens for the adapter hook."""
        if self.kind != "taco_style":
            yield
            return
        b, device = padded[0], next(self.parameters()).device
        if text is None:
            from textboost.model.text_adapter import stack_tokens, word_tokens

            text = stack_tokens([word_tokens([], 1, 1)] * b)
        text = {k: v.to(device) for k, v in text.items()}
        tokens = self.text_encoder(text["chars"], text["boxes"])
        frame = (padding[0], padding[2], size[0], size[1], padded[2], padded[3])
        self._text_ctx = {"tokens": tokens, "valid": text["valid"], "frame": frame}
        try:
            yield
        finally:
            self._text_ctx = None

    def _adapter_hook(self, module: nn.Module, inputs, output: Tensor) -> Tensor:
        ctx = self._text_ctx
        if ctx is None:
            raise RuntimeError("taco_style encoder run outside TextBoost.forward / compress")
        return self.text_adapter(output, ctx["tokens"], ctx["valid"], ctx["frame"])

    def fuse(
        self, x_base: Tensor, guidance: Tensor | None, cmap: Tensor | None = None,
        box: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """The fusion block on ``x_base`` (the colour block also takes ``cmap`` and ``box``);
        the baselines (``kind`` roi / taco_style) have none: ``x_base`` itself."""
        if self.kind != "textboost":
            return x_base
        if self.needs_colour:
            return self.fusion_block(x_base, guidance, cmap, box)
        return self.fusion_block(x_base, guidance)

    def forward(
        self, x: Tensor, guidance: Tensor | None = None, cmap: Tensor | None = None,
        box: Tensor | None = None, roi_mask: Tensor | None = None, text: dict | None = None,
    ) -> dict:  # fmt: skip
        """``x``: Bx3xHxW in [0, 1]; ``guidance``: Bx1xHxW in [0, 1] (None = no words);
        ``cmap`` Bx3xHxW in [0, 1] and ``box`` Bx1xHxW: colour guidance (colour block only).
        Encoder inputs of the baselines: ``roi_mask`` Bx1xHxW in {0, 1} (kind=roi), ``text``
        (kind=taco_style, ``textboost.model.text_adapter.stack_tokens``); None = no words."""
        x_pad, padding = pad(x)  # Bx3xH'xW', H', W' multiples of 64
        with self._text_context(text, padding, x.shape[-2:], x_pad.shape):
            out = self.backbone(self._encoder_image(x_pad, padding, roi_mask))
        x_base = crop(out["x_hat"], padding)  # Bx3xHxW
        x_hat = self.fuse(x_base, guidance, cmap, box)  # Bx3xHxW
        return {"x_hat": x_hat, "x_base": x_base, "likelihoods": out["likelihoods"]}

    def compress(self, x: Tensor, roi_mask: Tensor | None = None, text: dict | None = None) -> dict:
        """Entropy-code ``x`` (Bx3xHxW); the guidance map is not needed to encode. The
        baselines' encoders also take ``roi_mask`` / ``text`` (as ``forward``)."""
        x_pad, padding = pad(x)
        with self._text_context(text, padding, x.shape[-2:], x_pad.shape):
            out = self.backbone.compress(self._encoder_image(x_pad, padding, roi_mask))
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
        strength: Tensor | None = None,
    ) -> dict:
        """Decode strings into ``x_hat`` (fused, clamped) and ``x_base``; the image size comes
        from ``guidance`` (Bx1xHxW) or ``size`` (H, W). ``strength`` (Bx1xHxW in [0, 1], the
        per-word levels of ``textboost.text.strength``): ``x_hat`` is the output without words
        plus ``strength`` times what the words change."""
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
        if strength is not None:
            x_ref = self.fuse(x_base, None).clamp(0, 1)
            x_hat = x_ref + strength.to(x_ref) * (x_hat - x_ref)
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
        # keys added after models shipped are hashed only when set (config.LATER_MODEL_KEYS)
        h.update(json.dumps(model_key(self.model_cfg), sort_keys=True).encode())
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
