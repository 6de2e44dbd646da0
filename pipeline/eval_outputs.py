"""Evaluation outputs: aggregation, CSV/JSON (compressai's results schema), RD curves, crops.

Everything here is a pure function of the rows: two evaluations give the same bytes.
"""

from __future__ import annotations

import csv
import json
import math
import os

# each model's own row: textboost, or a baseline model's kind (roi, taco_style)
MODEL_METHODS = ("textboost", "roi", "taco_style")
METHODS = (*MODEL_METHODS, "backbone", "overlay", "jpeg", "webp", "avif", "avif_min", "avif_half")
LABELS = {
    "textboost": "TextBoost",
    "roi": "ROI (text mask to the encoder)",
    "taco_style": "TACO-style, no CLIP",
    "backbone": "Backbone (no fusion)",
    "overlay": "Overlay (side info, no learning)",
    "jpeg": "JPEG",
    "webp": "WebP",
    "avif": "AVIF",
    "avif_min": "AVIF (lowest quality)",
    "avif_half": "AVIF (half size)",
    "original": "Original",
}
COLUMNS = (
    "key", "model", "method", "bpp", "bpp_image", "bpp_side_info", "bpp_overhead", "quality",
    "psnr", "ms_ssim", "lpips", "n_gt", "n_det", "det_tp", "e2e_tp", "det_f1", "e2e_f1",
)  # fmt: skip
MEAN_KEYS = ("bpp", "bpp_image", "bpp_side_info", "bpp_overhead", "psnr", "ms_ssim", "lpips")


# ---------------------------------------------------------------- aggregation


def mean(values: list) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean metrics per (model, method); F1 from counts accumulated over the set."""
    from textboost.scoring.f1 import SpottingCounts

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["method"]), []).append(r)
    out = []
    for (model, method), rs in groups.items():
        entry: dict = {"model": model, "method": method, "images": len(rs)}
        for k in MEAN_KEYS:
            entry[k] = mean([r.get(k) for r in rs])
        if all(r.get("n_gt") is not None for r in rs):
            total = SpottingCounts()
            for r in rs:
                total = total + SpottingCounts(r["n_gt"], r["n_det"], r["det_tp"], r["e2e_tp"])
            entry.update(total.to_dict())
            entry.update(total.scores())
        out.append(entry)
    return out


def compressai_results(means: list[dict], method: str, models: list[str]) -> dict:
    """compressai's results JSON for one method (one point per model), F1 added."""
    by_model = {m["model"]: m for m in means if m["method"] == method}
    pts = [by_model[m] for m in models if m in by_model]
    results = {
        "bpp": [p["bpp"] for p in pts],
        "psnr-rgb": [p["psnr"] for p in pts],
        "ms-ssim-rgb": [p["ms_ssim"] for p in pts],
        "lpips": [p["lpips"] for p in pts],
        "det_f1": [p.get("det_f1") for p in pts],
        "e2e_f1": [p.get("e2e_f1") for p in pts],
    }
    desc = {
        "textboost": "TextBoost: backbone + OCR-guided fusion block; bpp includes side info",
        "roi": "ROI baseline (paper 5.2.5): the text mask of the sent words is a 4th encoder "
        "input channel, stage 1 weights the distortion inside it; nothing is sent but the "
        "backbone strings",
        "taco_style": "TACO-style baseline: the sent words' tokens (a small char-level text "
        "encoder, no CLIP) cross-attended in the encoder; the decoder never reads text; "
        "nothing is sent but the backbone strings",
        "backbone": "same latent strings decoded without the fusion block (no side info)",
        "overlay": "same container: backbone output with each sent word's box filled with its "
        "background colour and the guidance glyphs drawn in its text colour (no learning)",
        "jpeg": "Pillow JPEG at the TextBoost bpp of each image (quality search)",
        "webp": "Pillow WebP at the TextBoost bpp of each image (quality search)",
        "avif": "Pillow AVIF (aom, speed 6) at the TextBoost bpp of each image (quality search)",
        "avif_min": "Pillow AVIF (aom, speed 6) at its lowest quality (0): AVIF's rate floor",
        "avif_half": "Pillow AVIF of the 2x LANCZOS-downscaled image at the TextBoost bpp "
        "(bits over the full-size pixels), upscaled back with LANCZOS",
    }[method]
    return {"name": LABELS[method], "description": desc, "models": list(models), "results": results}


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(_clean(obj), f, indent=2, sort_keys=False)
        f.write("\n")


def write_csv(path: str, rows: list[dict], columns) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})


# ---------------------------------------------------------------- figures


def save_crops(crops: list[tuple], folder: str) -> None:
    """``(name, sheet)`` pairs: a PIL image, or its PNG bytes (``sheet.save(.., "PNG")``)."""
    os.makedirs(folder, exist_ok=True)
    for name, sheet in crops:
        if isinstance(sheet, bytes):
            with open(os.path.join(folder, name), "wb") as f:
                f.write(sheet)
        else:
            sheet.save(os.path.join(folder, name), format="PNG")


def curves(
    models: list[str], methods: list[str], families: dict[str, str] | None = None
) -> list[tuple[str, str, list[str]]]:
    """The RD curves to draw: (method, legend label, models on it). One curve per method; with
    models of several backbone ``families`` (model label -> backbone, e.g. hyperprior / tcm),
    the model's own rows, its backbone and overlay get one curve per family."""
    families = families or {}
    kinds = sorted({families.get(m, "") for m in models})
    out = []
    for method in methods:
        if method in ("textboost", "backbone", "overlay") and len(kinds) > 1:
            for kind in kinds:
                on = [m for m in models if families.get(m, "") == kind]
                out.append((method, f"{LABELS[method]} ({kind or 'other'})", on))
        else:
            out.append((method, LABELS[method], list(models)))
    return out


def rd_plot(
    means: list[dict], models: list[str], methods: list[str], path: str,
    families: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """PSNR, MS-SSIM, DET F1 and E2E F1 against bpp (matplotlib Agg), the ``curves``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("psnr", "PSNR (dB)"),
        ("ms_ssim", "MS-SSIM"),
        ("det_f1", "DET F1"),
        ("e2e_f1", "E2E F1"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    original = next((m for m in means if m["method"] == "original"), None)
    for ax, (key, title) in zip(axes.flat, panels):
        for method, label, on in curves(models, methods, families):
            pts = [m for mod in on for m in means if m["model"] == mod and m["method"] == method]
            pts = [p for p in pts if p.get(key) is not None and p.get("bpp") is not None]
            pts.sort(key=lambda p: p["bpp"])
            ax.plot([p["bpp"] for p in pts], [p[key] for p in pts], "o-", label=label)
        if original is not None and original.get(key) is not None and key.endswith("f1"):
            ax.axhline(original[key], ls="--", c="gray", label="Original images")
        ax.set_xlabel("bpp")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    axes.flat[2].legend(fontsize=8)  # with the originals' F1 line
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_outputs(
    out_dir: str, rows, means, labels, methods, crops, timings, rejects, families=None
) -> None:
    os.makedirs(os.path.join(out_dir, "results"), exist_ok=True)
    write_csv(os.path.join(out_dir, "per_image.csv"), rows, COLUMNS)
    summary_cols = ["model", "method", "images", *MEAN_KEYS, "n_gt", "n_det", "det_tp", "e2e_tp"]
    summary_cols += [f"{t}_{k}" for t in ("det", "e2e") for k in ("precision", "recall", "f1")]
    write_csv(os.path.join(out_dir, "summary.csv"), means, summary_cols)
    for m in methods:
        write_json(
            os.path.join(out_dir, "results", f"{m}.json"), compressai_results(means, m, labels)
        )
    rd_plot(means, labels, methods, os.path.join(out_dir, "rd_curves.png"), families)
    save_crops(crops, os.path.join(out_dir, "crops"))
    write_csv(
        os.path.join(out_dir, "timings.csv"),
        timings,
        ["key", "model", "encode_s", "decode_s", "total_s"],
    )
    with open(os.path.join(out_dir, "rejected.jsonl"), "w") as f:
        f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in rejects)
