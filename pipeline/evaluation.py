"""Evaluation (paper 5.1.3): real bitstreams, image metrics, text-spotting F1, baselines.

For every image of ``eval.dataset`` (validation split) and every model of ``eval.models``
(several lambdas give a curve): the side-info words (annotations or RapidOCR, filtered with
``data.filter.t_test``) and the image are encoded into a real ``.tbx`` container, which is
decoded twice: with the fusion block (TextBoost, exactly ``textboost decompress``) and without
it (the backbone: same stage-1 weights, same latent strings, no guidance; its rate is the
container without side info). JPEG and WebP are encoded at the TextBoost bpp of the same
image. Each reconstruction gets PSNR, MS-SSIM, LPIPS (when available) and RapidOCR word
spotting, scored against the ground truth with the ICDAR 2015 protocol (``textboost.f1``);
the originals are spotted too (the ceiling).

Outputs under ``eval.out``: ``per_image.csv``, ``summary.csv`` (means; F1 global over the
set), ``results/<method>.json`` (compressai's results schema plus ``det_f1``/``e2e_f1``),
``rd_curves.png``, ``crops/*.png``, ``timings.csv``, ``rejected.jsonl``, ``summary.json``.
Everything but timings is a pure function of the inputs: two runs give the same bytes.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from PIL import Image

from textboost.config import SourceConfig, TextBoostConfig
from textboost.errors import TextBoostError
from textboost.words import Word

METHODS = ("textboost", "backbone", "jpeg", "webp")
LABELS = {
    "textboost": "TextBoost",
    "backbone": "Backbone (no fusion)",
    "jpeg": "JPEG",
    "webp": "WebP",
    "original": "Original",
}
COLUMNS = (
    "key", "model", "method", "bpp", "bpp_image", "bpp_side_info", "bpp_overhead", "quality",
    "psnr", "ms_ssim", "lpips", "n_gt", "n_det", "det_tp", "e2e_tp", "det_f1", "e2e_f1",
)  # fmt: skip
MEAN_KEYS = ("bpp", "bpp_image", "bpp_side_info", "bpp_overhead", "psnr", "ms_ssim", "lpips")


@dataclass
class Sample:
    key: str
    image: Image.Image
    gt: list[Word] | None  # None: the dataset has no ground truth (F1 not available)
    side_words: list[Word] = field(default_factory=list)  # filtered side-info words


# ---------------------------------------------------------------- inputs


def eval_source(cfg: TextBoostConfig) -> SourceConfig:
    """The dataset section with ``eval.limit`` applied; ground truth always from annotations."""
    src = copy.deepcopy(cfg.eval.dataset)
    if cfg.eval.limit > 0:
        src.limit = cfg.eval.limit
    if src.kind != "folder":
        src.ocr = "annotations"
    return src


def _ground_truth(ref) -> list[Word] | None:
    from pipeline import sources
    from pipeline.samples import read_range, textocr_words
    from textboost.errors import AnnotationError
    from textboost.ocr import read_icdar2015_gt

    if ref.ann_kind == sources.ANN_TEXTOCR:
        return textocr_words(ref.ann)
    if ref.ann_kind == sources.ANN_ICDAR:
        if not ref.ann:
            raise AnnotationError(f"no ground-truth file gt_{ref.id}.txt for {ref.image}")
        return read_icdar2015_gt(read_range(ref.ann), name=ref.ann)
    if ref.ann_kind == sources.ANN_ERROR:
        raise AnnotationError(ref.ann)
    return None


def load_samples(cfg: TextBoostConfig) -> tuple[list[Sample], list[dict], str]:
    """(samples, rejects with reasons, dataset fingerprint)."""
    from pipeline.samples import SampleSpec, decode_image, load_input, ocr_words
    from pipeline.sources import fingerprint, list_source
    from textboost.filtering import filter_words

    synth = cfg.data.synth
    spec = SampleSpec(
        cfg.data.filter.t_test,
        cfg.shards.side_info_format,
        {
            "max_side": synth.max_side,
            "min_side": synth.min_side,
            "words": (synth.words_min, synth.words_max),
            "backgrounds": synth.backgrounds or None,
        },
        synth.seed,
    )
    refs = list_source(eval_source(cfg), "val", synth)
    samples, rejects = [], []
    for ref in refs:
        try:
            data, words = load_input(ref, spec)
            image = decode_image(data, full=True)[0].convert("RGB")
            gt = words if words is not None else _ground_truth(ref)
            if cfg.eval.ocr == "annotations":
                side = gt or []
            else:
                side = ocr_words(image)
            kept, _ = filter_words(side, cfg.data.filter.t_test)
        except (TextBoostError, FileNotFoundError) as exc:
            rejects.append({"key": ref.key, "reason": f"{type(exc).__name__}: {exc}"})
            continue
        samples.append(Sample(ref.key, image, gt, kept))
    return samples, rejects, fingerprint(refs)


# ---------------------------------------------------------------- one image


def _score(
    sample: Sample, image: Image.Image, with_lpips: bool, spotter
) -> dict[str, float | int | None]:
    from textboost import metrics
    from textboost.f1 import match_image

    out: dict = dict(metrics.image_metrics(sample.image, image, with_lpips))
    if sample.gt is None:
        return {**out, **dict.fromkeys(("n_gt", "n_det", "det_tp", "e2e_tp", "det_f1", "e2e_f1"))}
    counts = match_image(sample.gt, spotter.spot(image))
    s = counts.scores()
    return {**out, **counts.to_dict(), "det_f1": s["det_f1"], "e2e_f1": s["e2e_f1"]}


def evaluate_sample(model, label: str, sample: Sample, cfg: TextBoostConfig, ctx: dict) -> list[dict]:
    """Rows (one per method) of one image under one model, plus its reconstructions."""
    from textboost import baselines, container
    from textboost.codec import decode_container, encode_image

    fmt, pixels = cfg.shards.side_info_format, sample.image.width * sample.image.height
    t0 = time.perf_counter()
    data = encode_image(model, sample.image, sample.side_words, fmt)
    t1 = time.perf_counter()
    fused = decode_container(model, data)
    t2 = time.perf_counter()
    ctx["timing"] = {"encode_s": t1 - t0, "decode_s": t2 - t1}
    d = container.describe(data)
    base = {"key": sample.key, "model": label, "quality": None}
    recon = {"textboost": fused}
    rows = [
        {
            **base, "method": "textboost", "bpp": d["bpp_total"], "bpp_image": d["bpp_image"],
            "bpp_side_info": d["bpp_side_info"], "bpp_overhead": d["bpp_overhead"],
        }
    ]  # fmt: skip
    if "backbone" in cfg.eval.baselines:
        bb = container.describe(baselines.backbone_container(data, fmt))
        recon["backbone"] = baselines.decode_backbone(model, data)
        rows.append(
            {
                **base, "method": "backbone", "bpp": bb["bpp_total"], "bpp_image": bb["bpp_image"],
                "bpp_side_info": bb["bpp_side_info"], "bpp_overhead": bb["bpp_overhead"],
            }
        )  # fmt: skip
    for codec in ("jpeg", "webp"):
        if codec in cfg.eval.baselines:
            m = baselines.match_bpp(sample.image, codec, d["bpp_total"])
            recon[codec] = baselines.decode(m.data)
            rows.append(
                {
                    **base, "method": codec, "bpp": m.bpp, "bpp_image": m.bpp,
                    "bpp_side_info": 0.0, "bpp_overhead": 0.0, "quality": m.quality,
                }
            )  # fmt: skip
            assert len(m.data) * 8 / pixels == m.bpp
    for row in rows:
        row.update(_score(sample, recon[row["method"]], ctx["lpips"], ctx["spotter"]))
    ctx["recon"] = recon
    ctx["container"] = data
    return rows


# ---------------------------------------------------------------- aggregation


def _mean(values: list) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean metrics per (model, method); F1 from counts accumulated over the set."""
    from textboost.f1 import SpottingCounts

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["method"]), []).append(r)
    out = []
    for (model, method), rs in groups.items():
        entry: dict = {"model": model, "method": method, "images": len(rs)}
        for k in MEAN_KEYS:
            entry[k] = _mean([r.get(k) for r in rs])
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
        "backbone": "same latent strings decoded without the fusion block (no side info)",
        "jpeg": "Pillow JPEG at the TextBoost bpp of each image (quality search)",
        "webp": "Pillow WebP at the TextBoost bpp of each image (quality search)",
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


