"""Encoder-side text conditioning of the TACO-style baseline (``model.kind=taco_style``).

TACO (Lee et al., arXiv 2403.02944) injects text into the *encoder* through a text adapter;
the decoder never sees the text. Here the text is the OCR words TextBoost would send (the
filtered words), one token per word: a character-level text encoder (``SmallTextEncoder``:
char embedding + one tiny transformer layer, mean-pooled, trained from scratch; or a frozen
open_clip text tower, ``ClipTextEncoder``) plus an embedding of the word's box normalised to
the image. ``TextAdapter`` lets the image features inside ``g_a`` cross-attend to those tokens
(queries also carry their normalised position) and adds the result back through a
zero-initialised projection: a new adapter leaves the encoder exactly as it was.

Words travel as a dict of tensors (``word_tokens`` / ``stack_tokens``):
``chars`` BxWxL uint8 char ids (0 = padding), ``boxes`` BxWx4 float (x0, y0, x1, y1 in [0, 1]
of the image or crop), ``valid`` BxW bool.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textboost.errors import ConfigError

MAX_CHARS = 24  # characters kept per word (longer words are cut)
MAX_WORDS = 256  # words kept per image or crop (in the given order)
PAD, BOS, UNKNOWN = 0, 1, 2
_FIRST = 32  # printable ASCII 32..126 -> ids 3..97
VOCAB = 3 + 95
HEADS = 4


def char_ids(text: str) -> list[int]:
    """Char ids of ``text``: printable ASCII, anything else ``UNKNOWN``; at most MAX_CHARS."""
    out = []
    for ch in text[:MAX_CHARS]:
        c = ord(ch)
        out.append(c - _FIRST + 3 if _FIRST <= c < 127 else UNKNOWN)
    return out


def ids_text(ids) -> str:
    """Inverse of ``char_ids`` (unknown characters become ``?``)."""
    return "".join(chr(int(i) - 3 + _FIRST) if int(i) >= 3 else "?" for i in ids if int(i) > 1)


def word_tokens(
    words, height: int, width: int, x0: float = 0.0, y0: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(chars nxL uint8, boxes nx4 float32)`` of ``words`` in the ``height`` x ``width``
    frame whose top-left is (``x0``, ``y0``) in the words' coordinates: boxes are the words'
    axis-aligned bounds, clipped to the frame and normalised to [0, 1]."""
    words = list(words)[:MAX_WORDS]
    chars = np.zeros((len(words), MAX_CHARS), np.uint8)
    boxes = np.zeros((len(words), 4), np.float32)
    for i, w in enumerate(words):
        ids = char_ids(w.text)
        chars[i, : len(ids)] = ids
        xs = [(x - x0) / width for x, _ in w.polygon]
        ys = [(y - y0) / height for _, y in w.polygon]
        boxes[i] = np.clip([min(xs), min(ys), max(xs), max(ys)], 0.0, 1.0)
    return chars, boxes


def stack_tokens(items: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Tensor]:
    """Batch ``word_tokens`` results, padded to the most words (at least one slot)."""
    n = max([len(c) for c, _ in items] + [1])
    chars = torch.zeros((len(items), n, MAX_CHARS), dtype=torch.uint8)
    boxes = torch.zeros((len(items), n, 4), dtype=torch.float32)
    valid = torch.zeros((len(items), n), dtype=torch.bool)
    for i, (c, b) in enumerate(items):
        chars[i, : len(c)] = torch.from_numpy(c)
        boxes[i, : len(b)] = torch.from_numpy(b)
        valid[i, : len(c)] = True
    return {"chars": chars, "boxes": boxes, "valid": valid}


def tokens_for_image(words, height: int, width: int) -> dict[str, Tensor]:
    """The text input of one whole image (batch of 1), as the encoder gets it."""
    return stack_tokens([word_tokens(words, height, width)])


class SmallTextEncoder(nn.Module):
    """Per word: BOS + char embeddings + positions -> one transformer layer -> mean over the
    characters; plus a linear embedding of the normalised box. Output BxWxD."""

    def __init__(self, dim: int):
        super().__init__()
        self.chars = nn.Embedding(VOCAB, dim, padding_idx=PAD)
        self.position = nn.Parameter(torch.randn(MAX_CHARS + 1, dim) * 0.02)
        self.layer = nn.TransformerEncoderLayer(
            dim, HEADS, 2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.box = nn.Linear(4, dim)

    def forward(self, chars: Tensor, boxes: Tensor) -> Tensor:
        b, w, length = chars.shape
        ids = chars.long().reshape(b * w, length)
        ids = torch.cat([ids.new_full((b * w, 1), BOS), ids], 1)  # never all padding
        pad = ids == PAD
        h = self.chars(ids) + self.position[None, : length + 1]
        h = self.layer(h, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(1) / keep.sum(1)
        return pooled.reshape(b, w, -1) + self.box(boxes.to(pooled.dtype))


class ClipTextEncoder(nn.Module):
    """A frozen open_clip text tower (local weights only) + a trained projection to ``dim``,
    plus the box embedding. Needs ``open_clip`` (not a dependency of textboost)."""

    def __init__(self, arch: str, weights: str, dim: int):
        super().__init__()
        import os

        if not os.path.isfile(weights):
            raise ConfigError(
                f"model.clip_weights={weights!r} does not exist: CLIP is not downloaded; give "
                "a local open_clip weights file, or model.text_encoder=small"
            )
        try:
            import open_clip
        except ImportError:
            raise ConfigError(
                "model.text_encoder=clip needs the open_clip package (pip install "
                "open_clip_torch), which textboost does not install; or model.text_encoder=small"
            ) from None
        clip = open_clip.create_model(arch, pretrained=weights)
        clip.visual = None  # the text tower only
        for p in clip.parameters():
            p.requires_grad_(False)
        self.clip = clip
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.project = nn.Linear(int(clip.text_projection.shape[-1]), dim)
        self.box = nn.Linear(4, dim)

    def forward(self, chars: Tensor, boxes: Tensor) -> Tensor:
        b, w, _ = chars.shape
        texts = [ids_text(row) for row in chars.reshape(b * w, -1).tolist()]
        tokens = self.tokenizer(texts).to(chars.device)
        with torch.no_grad():
            feats = self.clip.encode_text(tokens).float()
        return self.project(feats).reshape(b, w, -1) + self.box(boxes.float())


def build_text_encoder(model_cfg) -> nn.Module:
    if model_cfg.text_encoder == "clip":
        return ClipTextEncoder(model_cfg.clip_arch, model_cfg.clip_weights, model_cfg.text_dim)
    return SmallTextEncoder(model_cfg.text_dim)


class TextAdapter(nn.Module):
    """Cross-attention of image features (queries, with their normalised x, y) to word tokens
    (keys / values, plus a learned null token so an image without words is well defined),
    added to the features through a zero-initialised 1x1 projection."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.query = nn.Conv2d(channels + 2, dim, 1)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.null = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.out = nn.Conv2d(dim, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, feat: Tensor, tokens: Tensor, valid: Tensor, frame: tuple) -> Tensor:
        """``feat`` BxCxhxw (padded image); ``tokens`` BxWxD; ``valid`` BxW; ``frame``:
        (left, top, height, width, padded_h, padded_w) of the image inside the padded one."""
        b, _, h, w = feat.shape
        left, top, height, width, ph, pw = frame
        ys = ((torch.arange(h, device=feat.device) + 0.5) * (ph / h) - top) / height
        xs = ((torch.arange(w, device=feat.device) + 0.5) * (pw / w) - left) / width
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), 0).to(feat.dtype)
        q = self.query(torch.cat([feat, grid.expand(b, 2, h, w)], 1))  # BxDxhxw
        d = q.shape[1]
        q = q.flatten(2).transpose(1, 2).reshape(b, h * w, HEADS, d // HEADS).transpose(1, 2)
        tokens = torch.cat([self.null.expand(b, 1, d).to(tokens.dtype), tokens], 1)
        keep = torch.cat([valid.new_ones((b, 1)), valid], 1)  # Bx(W+1)

        def heads(t: Tensor) -> Tensor:
            return t.reshape(b, t.shape[1], HEADS, d // HEADS).transpose(1, 2)

        k, v = heads(self.key(tokens)).to(q.dtype), heads(self.value(tokens)).to(q.dtype)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        a = a.transpose(1, 2).reshape(b, h * w, d).transpose(1, 2).reshape(b, d, h, w)
        return feat + self.out(a)
