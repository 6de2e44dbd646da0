"""LIC-TCM backbone (``model.backbone: tcm``) on compressai's entropy models.

Liu, Sun, Katto, "Learned Image Compression with Mixed Transformer-CNN Architectures",
CVPR 2023 (official code: github.com/jmliu206/LIC_TCM), rewritten here on compressai's
``EntropyBottleneck`` / ``GaussianConditional`` so that TextBoost can put its fusion block on
top (TextBoost-TCM).

Faithful to LIC-TCM:

* ``g_a`` / ``g_s``: a residual stride-2 block, then three stages of two Transformer-CNN
  Mixture (TCM) blocks each followed by a 2x down- (up-) sampling layer (x16 in all), with
  the official layer types (``ResidualBlockWithStride`` / ``ResidualBlockUpsample``, a final
  stride-2 3x3 conv / sub-pixel conv) and the official per-stage head widths (8, 16, 32 in
  ``g_a``; 32, 16, 8 in ``g_s``).
* TCM block: a 1x1 conv on the ``2N`` channels, split into a CNN branch (``N`` channels,
  compressai's ``ResidualBlock`` plus a skip, as in the official code) and a Swin-Transformer
  branch (``N`` channels: LayerNorm, window multi-head self-attention with a learned relative
  position bias, LayerNorm, 4x MLP); the two blocks of a stage use W-MSA then shifted SW-MSA;
  the branches are concatenated, fused by a 1x1 conv and added to the input.
* Hyperprior: ``h_a`` (two stride-2 stages with two TCM blocks of window 4) to ``z`` with
  ``3N/2`` channels (192 at the paper's N=128), an ``EntropyBottleneck`` on ``z``, and two
  synthesis transforms ``h_mean_s`` / ``h_scale_s`` giving the means and scales.
* Channel-wise autoregressive entropy model: ``y`` is split into ``model.tcm_slices`` equal
  slices; slice ``i``'s mean and scale are predicted from the hyperprior and every already
  decoded slice ``0..i-1`` (the paper's ``max_support_slices`` = 5 = all slices), with latent
  residual prediction (LRP: ``0.5 tanh`` of a CNN on the support and the quantised slice).
  Training: additive noise for the likelihoods and straight-through rounding for ``y_hat`` /
  ``z_hat`` (as the official code).

Simplified:

* The paper's SWAtten modules (a Swin attention block in front of each slice's mean and
  scale networks) are left out: each slice's mean, scale and LRP networks are small CNNs
  (3x3 conv, GELU, 3x3 conv, GELU, 3x3 conv; widths 224 and 128 at M=320, scaled with M),
  which is the official networks without the attention in front.
* Each slice has its own entropy-coded string (compressai's ``GaussianConditional.compress``
  per slice) instead of one rANS stream for all slices: ``tcm_slices + 1`` strings an image.
* Window attention pads feature maps whose sides are not multiples of the window inside the
  block and masks the padded tokens out of the attention (the official code needs multiples);
  for multiples of the window it computes exactly Swin's W-MSA / SW-MSA.
* No stochastic depth (the official default ``drop_path_rate`` is 0 as well).

Sizes: ``N`` is the width of each branch of a TCM block, so the transforms carry ``2N``
channels (the official definition: N=128, M=320 is the paper's model); ``M`` the latent
channels (divisible by ``tcm_slices``); ``tcm_window`` the attention window of ``g_a``/``g_s``
(paper: 8; the hyperprior's is 4, as in the paper). Heads: the branch width over the stage's
head width (at least 1, rounded down to a divisor of the width).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import (
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv3x3,
    subpel_conv3x3,
)
from compressai.models import CompressionModel
from compressai.ops import quantize_ste
from torch import Tensor, nn

HYPER_WINDOW = 4  # the paper's window in h_a / h_s


def num_heads(dim: int, head_dim: int) -> int:
    """Heads for a ``dim``-channel attention with heads about ``head_dim`` wide."""
    heads = max(1, dim // head_dim)
    while dim % heads:
        heads -= 1
    return heads


class WindowAttention(nn.Module):
    """(Shifted) window multi-head self-attention on BxHxWxC, with relative position bias.

    Any H, W: the map is zero-padded to multiples of ``window`` and padded tokens are masked
    out of every real token's attention (so they change nothing); the shifted variant rolls
    by ``window // 2`` and masks tokens that the roll brought together from far regions
    (Swin's SW-MSA mask)."""

    def __init__(self, dim: int, heads: int, window: int, shifted: bool):
        super().__init__()
        self.dim, self.heads, self.window = dim, heads, window
        self.shift = window // 2 if shifted else 0
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias, std=0.02)
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ).flatten(1)  # 2 x T
        rel = (coords[:, :, None] - coords[:, None, :]) + (window - 1)  # 2 x T x T
        index = rel[0] * (2 * window - 1) + rel[1]
        self.register_buffer("relative_position_index", index, persistent=False)

    def _mask(self, h: int, w: int, hp: int, wp: int, device) -> Tensor | None:
        """nW x T x T bool, True where attention is forbidden; None when nothing is."""
        ws, s = self.window, self.shift
        if not s and hp == h and wp == w:
            return None
        rows = torch.arange(hp, device=device)
        cols = torch.arange(wp, device=device)
        label = ((rows[:, None] >= h) | (cols[None, :] >= w)).long() * 9  # padding
        if s:
            label = torch.roll(label, (-s, -s), (0, 1))
            region_h = (rows >= hp - ws).long() + (rows >= hp - s).long()  # Swin's 3 regions
            region_w = (cols >= wp - ws).long() + (cols >= wp - s).long()
            label = label + region_h[:, None] * 3 + region_w[None, :]
        lw = label.view(hp // ws, ws, wp // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
        return lw[:, :, None] != lw[:, None, :]

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        ws, s = self.window, self.shift
        ph, pw = (-h) % ws, (-w) % ws
        if ph or pw:
            x = F.pad(x, (0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        if s:
            x = torch.roll(x, (-s, -s), (1, 2))
        nh, nw, t = hp // ws, wp // ws, ws * ws
        win = x.reshape(b, nh, ws, nw, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nh * nw, t, c)
        qkv = self.qkv(win).reshape(b, nh * nw, t, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each B x nW x heads x T x d
        bias = self.relative_position_bias[self.relative_position_index.view(-1)]
        bias = bias.view(t, t, self.heads).permute(2, 0, 1).to(q.dtype)  # heads x T x T
        mask = self._mask(h, w, hp, wp, x.device)
        if mask is not None:
            bias = bias.masked_fill(mask[:, None], float("-inf"))  # nW x heads x T x T
        # explicit attention (T = window^2 tokens is small): faster on CPU here than torch's
        # scaled_dot_product_attention with a float bias mask
        attn = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1) + bias
        out = attn.softmax(dim=-1) @ v  # B x nW x heads x T x d
        out = self.proj(out.transpose(2, 3).reshape(b, nh * nw, t, c))
        out = out.reshape(b, nh, nw, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if s:
            out = torch.roll(out, (s, s), (1, 2))
        return out[:, :h, :w]


class SwinBlock(nn.Module):
    """Pre-norm Transformer block on BxHxWxC: x + W-MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, window: int, shifted: bool):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.msa = WindowAttention(dim, heads, window, shifted)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.msa(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TCMBlock(nn.Module):
    """Transformer-CNN Mixture block on Bx2NxHxW (``dim`` = N channels per branch)."""

    def __init__(self, dim: int, head_dim: int, window: int, shifted: bool):
        super().__init__()
        self.dim = dim
        self.conv1_1 = nn.Conv2d(2 * dim, 2 * dim, 1)
        self.conv_block = ResidualBlock(dim, dim)
        self.trans_block = SwinBlock(dim, num_heads(dim, head_dim), window, shifted)
        self.conv1_2 = nn.Conv2d(2 * dim, 2 * dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        conv_x, trans_x = self.conv1_1(x).split(self.dim, dim=1)
        conv_x = self.conv_block(conv_x) + conv_x
        trans_x = self.trans_block(trans_x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.conv1_2(torch.cat((conv_x, trans_x), dim=1))


def _tcm_stage(dim: int, head_dim: int, window: int, depth: int = 2) -> list[nn.Module]:
    return [TCMBlock(dim, head_dim, window, shifted=bool(i % 2)) for i in range(depth)]


def _slice_net(in_ch: int, out_ch: int, m: int) -> nn.Sequential:
    """The official per-slice CNN (widths 224, 128 at M=320), scaled with M."""
    w1, w2 = max(8, round(224 * m / 320)), max(8, round(128 * m / 320))
    return nn.Sequential(
        nn.Conv2d(in_ch, w1, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(w1, w2, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(w2, out_ch, 3, padding=1),
    )


class TCM(CompressionModel):
    """LIC-TCM (CVPR 2023) with a channel-wise entropy model; see the module docstring.

    compressai contract: ``forward(x)`` -> ``{"x_hat", "likelihoods"}`` (likelihoods per
    slice: ``y0`` .. ``y{S-1}`` and ``z``); ``compress(x)`` -> ``{"strings", "shape"}``
    (strings: one list per slice, then z's; shape: z's H x W); ``decompress(strings, shape)``
    -> clamped ``{"x_hat"}``; ``decode_unclamped`` the same before clamping. H and W of the
    input must be multiples of 64.
    """

    def __init__(self, N: int = 128, M: int = 320, num_slices: int = 5, window: int = 8):
        super().__init__()
        if M % num_slices:
            raise ValueError(f"M={M} is not divisible by num_slices={num_slices}")
        self.N, self.M, self.num_slices, self.window = N, M, num_slices, window
        self.slice_channels = m = M // num_slices
        self.z_channels = z = 3 * N // 2
        c = 2 * N
        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, c, 2),
            *_tcm_stage(N, 8, window),
            ResidualBlockWithStride(c, c, 2),
            *_tcm_stage(N, 16, window),
            ResidualBlockWithStride(c, c, 2),
            *_tcm_stage(N, 32, window),
            conv3x3(c, M, stride=2),
        )
        self.g_s = nn.Sequential(
            ResidualBlockUpsample(M, c, 2),
            *_tcm_stage(N, 32, window),
            ResidualBlockUpsample(c, c, 2),
            *_tcm_stage(N, 16, window),
            ResidualBlockUpsample(c, c, 2),
            *_tcm_stage(N, 8, window),
            subpel_conv3x3(c, 3, 2),
        )
        self.h_a = nn.Sequential(
            ResidualBlockWithStride(M, c, 2),
            *_tcm_stage(N, 32, HYPER_WINDOW),
            conv3x3(c, z, stride=2),
        )

        def h_s() -> nn.Sequential:
            return nn.Sequential(
                ResidualBlockUpsample(z, c, 2),
                *_tcm_stage(N, 32, HYPER_WINDOW),
                subpel_conv3x3(c, M, 2),
            )

        self.h_mean_s, self.h_scale_s = h_s(), h_s()
        support = [M + m * i for i in range(num_slices)]
        self.cc_mean_transforms = nn.ModuleList(_slice_net(s, m, M) for s in support)
        self.cc_scale_transforms = nn.ModuleList(_slice_net(s, m, M) for s in support)
        self.lrp_transforms = nn.ModuleList(_slice_net(s + m, m, M) for s in support)
        self.entropy_bottleneck = EntropyBottleneck(z)
        self.gaussian_conditional = GaussianConditional(None)

    # --- the channel-wise context model ----------------------------------------------------
    def slice_params(
        self, i: int, latent_means: Tensor, latent_scales: Tensor, decoded: list[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, scale and LRP support of slice ``i`` from the hyperprior and the already
        decoded slices ``decoded`` (= ``y_hat`` slices 0..i-1)."""
        mean_support = torch.cat([latent_means, *decoded], dim=1)
        scale_support = torch.cat([latent_scales, *decoded], dim=1)
        mu = self.cc_mean_transforms[i](mean_support)
        scale = self.cc_scale_transforms[i](scale_support)
        return mu, scale, mean_support

    def _refine(self, i: int, mean_support: Tensor, y_hat_slice: Tensor) -> Tensor:
        """Latent residual prediction: ``y_hat + 0.5 tanh(lrp(support, y_hat))``."""
        lrp = self.lrp_transforms[i](torch.cat([mean_support, y_hat_slice], dim=1))
        return y_hat_slice + 0.5 * torch.tanh(lrp)

    def _hyper(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        return self.h_mean_s(z_hat), self.h_scale_s(z_hat)

    # --- compressai contract ---------------------------------------------------------------
    def _analysis(self, x: Tensor) -> Tensor:
        # contiguous: torch 2.14's CPU backward of the stride-2 1x1 skip conv on a 3-channel
        # channels-last input (the training loader's permuted HWC batches) corrupts the heap
        return self.g_a(x.contiguous())

    def forward(self, x: Tensor) -> dict:
        y = self._analysis(x)
        z = self.h_a(y)
        _, z_likelihoods = self.entropy_bottleneck(z)
        z_offset = self.entropy_bottleneck._get_medians()
        z_hat = quantize_ste(z - z_offset) + z_offset
        latent_means, latent_scales = self._hyper(z_hat)
        likelihoods: dict[str, Tensor] = {}
        decoded: list[Tensor] = []
        for i, y_slice in enumerate(y.chunk(self.num_slices, 1)):
            mu, scale, support = self.slice_params(i, latent_means, latent_scales, decoded)
            _, likelihoods[f"y{i}"] = self.gaussian_conditional(y_slice, scale, mu)
            y_hat_slice = quantize_ste(y_slice - mu) + mu
            decoded.append(self._refine(i, support, y_hat_slice))
        likelihoods["z"] = z_likelihoods
        return {"x_hat": self.g_s(torch.cat(decoded, dim=1)), "likelihoods": likelihoods}

    def compress(self, x: Tensor) -> dict:
        y = self._analysis(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        latent_means, latent_scales = self._hyper(z_hat)
        gc = self.gaussian_conditional
        strings: list[list[bytes]] = []
        decoded: list[Tensor] = []
        for i, y_slice in enumerate(y.chunk(self.num_slices, 1)):
            mu, scale, support = self.slice_params(i, latent_means, latent_scales, decoded)
            indexes = gc.build_indexes(scale)
            strings.append(gc.compress(y_slice, indexes, means=mu))
            y_hat_slice = gc.quantize(y_slice, "dequantize", mu)  # what the decoder gets
            decoded.append(self._refine(i, support, y_hat_slice))
        return {"strings": [*strings, z_strings], "shape": z.size()[-2:]}

    def decode_latent(self, strings: list, shape) -> Tensor:
        """``y_hat`` from ``compress``'s strings and shape (slices, then z)."""
        if len(strings) != self.num_slices + 1:
            raise ValueError(f"TCM expects {self.num_slices + 1} string lists, got {len(strings)}")
        z_hat = self.entropy_bottleneck.decompress(strings[-1], shape)
        latent_means, latent_scales = self._hyper(z_hat)
        gc = self.gaussian_conditional
        decoded: list[Tensor] = []
        for i in range(self.num_slices):
            mu, scale, support = self.slice_params(i, latent_means, latent_scales, decoded)
            y_hat_slice = gc.decompress(strings[i], gc.build_indexes(scale), means=mu)
            decoded.append(self._refine(i, support, y_hat_slice))
        return torch.cat(decoded, dim=1)

    def decode_unclamped(self, strings: list, shape) -> Tensor:
        """The synthesis output before clamping (TextBoost's fusion block takes it)."""
        return self.g_s(self.decode_latent(strings, shape))

    def decompress(self, strings: list, shape) -> dict:
        return {"x_hat": self.decode_unclamped(strings, shape).clamp_(0, 1)}
