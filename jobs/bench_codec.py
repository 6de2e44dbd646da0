"""``python -m jobs.bench_codec``: codec speed and container overhead on CPU (paper 4.2).

For each backbone (hyperprior, ELIC; random weights are fine for timing) it prints encode and
decode milliseconds per megapixel for the backbone alone (compressai ``compress`` /
``decompress``) and for the full TextBoost codec (``encode_image`` / ``decode_container``:
side info, container, guidance rendering and fusion block included), the fusion block alone
(sparse inference path, and dense for comparison) and its share of decode time (target
<= 10 %), the container overhead in bytes, and the PSNR between fused
and backbone output for an all-zero guidance map (gated block: identical, i.e. inf dB).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = time.process_time


def _timed(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = _clock()
        result = fn()
        times.append(_clock() - t0)
    return statistics.median(times), result


def scene(height: int, width: int, seed: int = 0):
    """A smooth synthetic scene with small text, and the words drawn on it."""
    from PIL import Image, ImageDraw, ImageFont

    from textboost.text.words import Word

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.3 * np.sin(xx / 37 + yy / 53)], -1)
    image = Image.fromarray((base * 255).astype(np.uint8), "RGB")
    draw, font, words = ImageDraw.Draw(image), ImageFont.load_default(size=14), []
    for i in range(12):
        x, y = int(rng.integers(0, width - 120)), int(rng.integers(0, height - 20))
        text = f"TEXT{i:02d}"
        draw.text((x, y), text, fill=(250, 250, 250), font=font)
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
        words.append(Word(((x0, y0), (x1, y0), (x1, y1), (x0, y1)), text, True))
    return image, words


def bench_backbone(kind: str, n: int, m: int, image, words, repeats: int) -> dict:
    import torch

    from textboost.codec.container import describe
    from textboost.codec.image_codec import (
        decode_container,
        encode_image,
        guidance_tensor,
        image_to_tensor,
    )
    from textboost.config import ModelConfig
    from textboost.model import build_model
    from textboost.model.padding import pad

    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=kind, N=n, M=m)).eval()
    torch.nn.init.normal_(model.fusion_block.project.weight, std=0.05)  # a "trained" block
    model.ensure_updated()
    x = image_to_tensor(image)
    g = guidance_tensor(words, image.height, image.width)
    x_pad, _ = pad(x)
    mp = image.width * image.height / 1e6
    with torch.inference_mode():
        t_enc_bb, enc = _timed(lambda: model.backbone.compress(x_pad), repeats)
        t_dec_bb, dec = _timed(
            lambda: model.backbone.decompress(enc["strings"], enc["shape"]), repeats
        )
        x_base = dec["x_hat"][..., : image.height, : image.width].contiguous()
        t_fusion, _ = _timed(lambda: model.fusion_block(x_base, g), repeats)
        model.fusion_block.sparse_inference = False
        t_dense, _ = _timed(lambda: model.fusion_block(x_base, g), repeats)
        model.fusion_block.sparse_inference = True
        t_guid, _ = _timed(lambda: guidance_tensor(words, image.height, image.width), repeats)
        zero = torch.zeros_like(g)
        gated = _psnr(model.fusion_block(x_base, zero), x_base)
        model.fusion_block.gated = False
        ungated = _psnr(model.fusion_block(x_base, zero), x_base)
        model.fusion_block.gated = True
    t_enc_tb, data = _timed(lambda: encode_image(model, image, words), repeats)
    t_dec_tb, _ = _timed(lambda: decode_container(model, data), repeats)
    d = describe(data)
    return {
        "backbone": f"{kind}(N={n},M={m})",
        "enc_bb": 1e3 * t_enc_bb / mp,
        "enc_tb": 1e3 * t_enc_tb / mp,
        "dec_bb": 1e3 * t_dec_bb / mp,
        "dec_tb": 1e3 * t_dec_tb / mp,
        "fusion": 1e3 * t_fusion / mp,
        "fusion_dense": 1e3 * t_dense / mp,
        "guidance": 1e3 * t_guid / mp,
        "fusion_share": 100 * t_fusion / t_dec_tb,
        "dense_share": 100 * t_dense / (t_dec_tb - t_fusion + t_dense),
        "overhead_bytes": d["overhead_bytes"],
        "side_info_bytes": d["side_info_bytes"],
        "image_bytes": d["image_bytes"],
        "psnr_zero_gated": gated,
        "psnr_zero_ungated": ungated,
    }


def _psnr(a, b) -> float:
    import torch

    from textboost.model.losses import psnr_from_mse

    return float(psnr_from_mse(torch.mean((a.clamp(0, 1) - b.clamp(0, 1)) ** 2)))


def _backbones(text: str) -> list[tuple[str, int, int]]:
    """``kind:N:M[,kind:N:M...]`` -> [(kind, N, M), ...]."""
    try:
        return [(k, int(n), int(m)) for k, n, m in (s.split(":") for s in text.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"want kind:N:M[,kind:N:M...] (e.g. hyperprior:128:192), got {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.bench_codec", description=__doc__)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="cpu: process CPU time (stable on a shared machine; use with --threads 1); wall",
    )
    parser.add_argument(
        "--backbones",
        type=_backbones,
        default="hyperprior:128:192,elic:192:320",
        help="comma list of kind:N:M",
    )
    args = parser.parse_args(argv)

    import torch

    global _clock
    _clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    image, words = scene(args.height, args.width)
    print(
        f"image {args.width}x{args.height}, {len(words)} words, {args.threads} threads, "
        f"median of {args.repeats}; {args.clock} time in ms per megapixel"
    )
    header = (
        f"{'backbone':26} {'enc bb':>8} {'enc TB':>8} {'dec bb':>8} {'dec TB':>8} "
        f"{'fusion':>7} {'dense':>7} {'render':>7} {'fus %dec':>8} {'dense %':>7} {'cont B':>6} {'side B':>6} "
        f"{'img B':>7} {'PSNR0 gated/ungated':>20}"
    )
    print(header, flush=True)
    for kind, n, m in args.backbones:
        r = bench_backbone(kind, n, m, image, words, args.repeats)
        print(
            f"{r['backbone']:26} {r['enc_bb']:8.0f} {r['enc_tb']:8.0f} {r['dec_bb']:8.0f} "
            f"{r['dec_tb']:8.0f} {r['fusion']:7.0f} {r['fusion_dense']:7.0f} {r['guidance']:7.0f} "
            f"{r['fusion_share']:7.1f}% {r['dense_share']:6.1f}% {r['overhead_bytes']:6d} {r['side_info_bytes']:6d} "
            f"{r['image_bytes']:7d} {r['psnr_zero_gated']:>9.1f}/{r['psnr_zero_ungated']:.1f} dB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
