"""Evaluation (paper 5.1.3): real bitstreams, image metrics, text-spotting F1, baselines.

For every image of ``eval.dataset`` (validation split) and every model of ``eval.models``
(several lambdas give a curve): the side-info words (annotations or RapidOCR, filtered with
``data.filter.t_test``) and the image are encoded into a real ``.tbx`` container, which is
decoded twice: with the fusion block (TextBoost, exactly ``textboost decompress``) and without
it (the backbone: same stage-1 weights, same latent strings, no guidance; its rate is the
container without side info). JPEG, WebP and AVIF are encoded at the TextBoost bpp of the same
image; ``avif_min`` is AVIF at its lowest quality (its rate floor) and ``avif_half`` AVIF of the
2x-downscaled image at the matched bpp (over the full-size pixels), upscaled back
(``textboost.baselines``). Each reconstruction gets PSNR, MS-SSIM, LPIPS (when available) and
RapidOCR word spotting, scored against the ground truth with the ICDAR 2015 protocol
(``textboost.f1``); the originals are spotted too (the ceiling).

Outputs under ``eval.out``: ``per_image.csv``, ``summary.csv`` (means; F1 global over the
set), ``results/<method>.json`` (compressai's results schema plus ``det_f1``/``e2e_f1``),
``rd_curves.png``, ``crops/*.png``, ``timings.csv``, ``rejected.jsonl``, ``summary.json``.
Everything but timings is a pure function of the inputs: two runs give the same bytes.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from PIL import Image

from pipeline.eval_outputs import aggregate, crop_panel, mean, write_json, write_outputs
from textboost.config import SourceConfig, TextBoostConfig
from textboost.errors import TextBoostError
from textboost.words import Word

METHODS = ("textboost", "backbone", "overlay", "jpeg", "webp", "avif", "avif_min", "avif_half")


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
    from pipeline.samples import decode_image, load_input, ocr_words
    from pipeline.shards import sample_spec
    from pipeline.sources import fingerprint, list_source
    from textboost.filtering import filter_words

    spec = sample_spec(cfg, "val")  # T_test, as the val shards (or eval.t_test)
    threshold = cfg.eval.t_test if cfg.eval.t_test > 0 else spec.threshold
    refs = list_source(eval_source(cfg), "val", cfg.data.synth)
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
            kept, _ = filter_words(side, threshold)
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


def _original_row(sample: Sample, spotter) -> dict:
    """Spotting F1 of the original image: the ceiling of every method (no rate, no distortion)."""
    from textboost.f1 import match_image

    counts = match_image(sample.gt or [], spotter.spot(sample.image))
    s = counts.scores()
    row = {"key": sample.key, "model": "-", "method": "original", **counts.to_dict()}
    return {**row, "det_f1": s["det_f1"], "e2e_f1": s["e2e_f1"]}


def _rate(
    method: str, bpp: float, image: float, side: float, overhead: float, quality=None
) -> dict:
    return {
        "method": method, "bpp": bpp, "bpp_image": image, "bpp_side_info": side,
        "bpp_overhead": overhead, "quality": quality,
    }  # fmt: skip


def baseline_rates(
    image: Image.Image, methods, target_bpp: float
) -> tuple[list[dict], dict[str, Image.Image], dict]:
    """Rate fields, reconstructions and encodings (``baselines.MatchedEncoding``) of the Pillow
    baselines among ``methods``, in ``baselines.IMAGE_BASELINES`` order, for ``target_bpp``."""
    from textboost import baselines

    rates, recon, encodings = [], {}, {}
    for method in baselines.IMAGE_BASELINES:
        if method in methods:
            m, recon[method] = baselines.image_baseline(image, method, target_bpp)
            encodings[method] = m
            rates.append(_rate(method, m.bpp, m.bpp, 0.0, 0.0, m.quality))
    return rates, recon, encodings


def overlay_image(model, data: bytes) -> Image.Image:
    """The no-learning baseline of a colour container: the backbone's decoding with each sent
    word's box filled with its background colour and the guidance glyphs drawn in its text
    colour (``textboost.colours.overlay``): what the side info gives without the fusion block."""
    import numpy as np

    from textboost import baselines, colours, container
    from textboost.codec import decode_words
    from textboost.guidance import render_guidance

    c = container.unpack(data)
    words = decode_words(c)
    base = np.asarray(baselines.decode_backbone(model, data))
    g = render_guidance(words, c.height, c.width)
    cmap, box = colours.colour_guidance(g, words, colours.unpack(c.colours, len(words)))
    return Image.fromarray(colours.overlay(base, cmap, box))


def evaluate_sample(
    model, label: str, sample: Sample, cfg: TextBoostConfig, ctx: dict
) -> list[dict]:
    """Rows (one per method) of one image under one model. ``ctx`` holds the spotter and the
    LPIPS switch; the reconstructions, container and timings are left in it for the caller."""
    from textboost import baselines, container
    from textboost.codec import decode_container, encode_image

    fmt = cfg.shards.side_info_format
    t0 = time.perf_counter()
    data = encode_image(model, sample.image, sample.side_words, fmt)
    t1 = time.perf_counter()
    recon = {"textboost": decode_container(model, data)}  # exactly `textboost decompress`
    ctx["timing"] = {"encode_s": t1 - t0, "decode_s": time.perf_counter() - t1}
    d = container.describe(data)
    rates = [
        _rate("textboost", d["bpp_total"], d["bpp_image"], d["bpp_side_info"], d["bpp_overhead"])
    ]
    if "backbone" in cfg.eval.baselines:
        b = container.describe(baselines.backbone_container(data, fmt))
        recon["backbone"] = baselines.decode_backbone(model, data)
        rates.append(
            _rate("backbone", b["bpp_total"], b["bpp_image"], b["bpp_side_info"], b["bpp_overhead"])
        )
    if "overlay" in cfg.eval.baselines and model.needs_colour:
        recon["overlay"] = overlay_image(model, data)
        rates.append(  # the same container: same bits, no learned fusion
            _rate("overlay", d["bpp_total"], d["bpp_image"], d["bpp_side_info"], d["bpp_overhead"])
        )
    coded, coded_recon, _ = baseline_rates(sample.image, cfg.eval.baselines, d["bpp_total"])
    rates += coded
    recon.update(coded_recon)
    rows = []
    for rate in rates:
        scores = _score(sample, recon[rate["method"]], ctx["lpips"], ctx["spotter"])
        rows.append({"key": sample.key, "model": label, **rate, **scores})
    ctx["recon"], ctx["container"] = recon, data
    return rows


# ---------------------------------------------------------------- run


def _stage_dir(out: str) -> tuple[str, bool]:
    """Local folder to write into, and whether it must be uploaded to ``out`` afterwards."""
    if "://" in out and not out.startswith("file://"):
        return tempfile.mkdtemp(prefix="textboost-eval-"), True
    local = out[len("file://") :] if out.startswith("file://") else out
    os.makedirs(local, exist_ok=True)
    return local, False


def model_label(index: int, meta: dict, uri: str = "") -> str:
    """``m<index>`` plus the zoo name, or the training lambda when the checkpoint records it."""
    if uri.startswith("zoo:"):
        return f"m{index}-{uri[4:]}"
    lmbda = ((meta.get("run_config") or {}).get("train") or {}).get("lmbda")
    return f"m{index}" + (f"-lambda{lmbda:g}" if isinstance(lmbda, int | float) else "")


def evaluate(cfg: TextBoostConfig, out_dir: str) -> dict:
    """The evaluation itself (no MLflow): writes the outputs into ``out_dir``; returns the summary."""
    from tqdm import tqdm

    from textboost import metrics
    from textboost.checkpoint import load_checkpoint
    from textboost.spotting import get_spotter

    if not cfg.eval.models:
        raise TextBoostError("eval.models is empty: give checkpoint paths or MLflow model URIs")
    t_start = time.perf_counter()
    samples, rejects, fingerprint = load_samples(cfg)
    if not samples:
        raise TextBoostError(f"no evaluable images in eval.dataset ({len(rejects)} rejected)")
    with_lpips = bool(cfg.eval.lpips) and metrics.lpips_available()
    spotter = get_spotter()
    rows = [_original_row(s, spotter) for s in samples if s.gt is not None]
    timings, labels, crops, model_meta = [], [], [], {}
    for i, uri in enumerate(cfg.eval.models):
        model, meta = load_checkpoint(uri)
        label = model_label(i, meta, uri)
        labels.append(label)
        keep = ("model_identity", "stage", "manifest_sha256", "run_config")
        model_meta[label] = {"uri": uri, **{k: meta.get(k) for k in keep}}
        for j, s in enumerate(tqdm(samples, desc=f"evaluate {label}", leave=False)):
            ctx: dict = {"lpips": with_lpips, "spotter": spotter}
            t0 = time.perf_counter()
            new = evaluate_sample(model, label, s, cfg, ctx)
            rows.extend(new)
            timings.append(
                {"key": s.key, "model": label, **ctx["timing"], "total_s": time.perf_counter() - t0}
            )
            if j < cfg.eval.crops:
                crops.append(crop_panel(s, label, ctx, new))
    means = aggregate(rows)
    methods = [m for m in METHODS if m == "textboost" or m in cfg.eval.baselines]
    write_outputs(out_dir, rows, means, labels, methods, crops, timings, rejects)
    elapsed = time.perf_counter() - t_start
    summary = {
        "models": labels, "model_meta": model_meta, "methods": methods, "means": means,
        "images": len(samples), "rejected": len(rejects), "eval_fingerprint": fingerprint,
        "lpips": "available" if with_lpips else "n/a", "seconds": elapsed,
        "seconds_per_image": elapsed / len(samples),
        "seconds_per_image_per_model": mean([t["total_s"] for t in timings]),
    }  # fmt: skip
    write_json(os.path.join(out_dir, "summary.json"), summary)
    return summary


def run_evaluation(cfg: TextBoostConfig) -> dict:
    """Evaluate, write ``eval.out``, and (``eval.track``) log it all to an MLflow run; with
    ``eval.register`` each evaluated checkpoint becomes a registered pyfunc version."""
    from pipeline.tracking import check_model_uris

    check_model_uris(cfg.eval.models, cfg.mlflow.tracking_uri, "eval.models")  # before any work
    out_dir, upload = _stage_dir(cfg.eval.out)
    try:
        if not cfg.eval.track:
            summary = evaluate(cfg, out_dir)
        else:
            summary = _tracked(cfg, out_dir)
        if upload:
            import fsspec

            fs, root = fsspec.core.url_to_fs(cfg.eval.out)
            fs.put(out_dir.rstrip("/") + "/", root, recursive=True)
    finally:
        if upload:
            shutil.rmtree(out_dir, ignore_errors=True)
    summary["out"] = cfg.eval.out
    return summary


def _tracked(cfg: TextBoostConfig, out_dir: str) -> dict:
    import mlflow

    from pipeline import tracking
    from textboost.config import config_hash, flatten, to_dict

    tracking.setup_mlflow(cfg.mlflow)
    with mlflow.start_run(run_name="evaluate") as run:
        params = {k: str(v)[:6000] for k, v in flatten(to_dict(cfg)).items()}
        mlflow.log_params(params)
        mlflow.set_tags(
            {f"{tracking.TAG}kind": "evaluate", f"{tracking.TAG}eval_config_hash": config_hash(cfg)}
        )
        summary = evaluate(cfg, out_dir)
        mlflow.set_tag(f"{tracking.TAG}eval_fingerprint", summary["eval_fingerprint"])
        tracking.log_summary(summary)
        mlflow.log_artifacts(out_dir, artifact_path="eval")
        summary["run_id"] = run.info.run_id
        if cfg.eval.register:
            summary["registered"] = tracking.register_evaluated(cfg, summary)
    return summary
