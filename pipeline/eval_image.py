"""One image under the evaluated models (``pipeline.evaluation``): encode into a real
container, decode it once (TextBoost, its backbone, the overlay), the Pillow baselines at the
same bits, image metrics and spotting F1 per reconstruction; ``evaluate_item`` is the body of
one evaluation task (a Ray task or the driver itself)."""

from __future__ import annotations

import base64
import io
import os
import time
from dataclasses import dataclass

from PIL import Image

from pipeline.eval_crops import crop_panel
from pipeline.eval_data import EvalItem, Sample, SampleResult, prepare_sample
from pipeline.eval_outputs import METHODS
from textboost.config import TextBoostConfig
from textboost.errors import CheckpointError, TextBoostError

# baselines whose row does not depend on the model (AVIF at its lowest quality): computed
# once per image, the same row under every model
MODEL_FREE = ("avif_min",)
ROWS_VERSION = 1  # the version of a rows.jsonl line (pipeline.eval_rows)


def _score(
    sample: Sample, image: Image.Image, with_lpips: bool, spotter
) -> dict[str, float | int | None]:
    from textboost.scoring import metrics
    from textboost.scoring.f1 import match_image

    out: dict = dict(metrics.image_metrics(sample.image, image, with_lpips))
    if sample.gt is None:
        return {**out, **dict.fromkeys(("n_gt", "n_det", "det_tp", "e2e_tp", "det_f1", "e2e_f1"))}
    counts = match_image(sample.gt, spotter.spot(image))
    s = counts.scores()
    return {**out, **counts.to_dict(), "det_f1": s["det_f1"], "e2e_f1": s["e2e_f1"]}


def _original_row(sample: Sample, spotter) -> dict:
    """Spotting F1 of the original image: the ceiling of every method (no rate, no distortion)."""
    from textboost.scoring.f1 import match_image

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
    from textboost.codec import baselines

    rates, recon, encodings = [], {}, {}
    for method in baselines.IMAGE_BASELINES:
        if method in methods:
            m, recon[method] = baselines.image_baseline(image, method, target_bpp)
            encodings[method] = m
            rates.append(_rate(method, m.bpp, m.bpp, 0.0, 0.0, m.quality))
    return rates, recon, encodings


def _overlay(decoded) -> Image.Image:
    """The no-learning baseline of a colour container, from its one decoding
    (``codec.decode_full``): the backbone's output with each sent word's box filled with its
    background colour and the guidance glyphs drawn in its text colour
    (``textboost.text.colours.overlay``): what the side info gives without the fusion block."""
    import numpy as np

    from textboost.text import colours

    cmap, box = decoded.maps
    return Image.fromarray(colours.overlay(np.asarray(decoded.base), cmap, box))


@dataclass
class Scoring:
    """How one task scores its reconstructions: the spotter, the LPIPS switch and ``memo``,
    the model-free rows (``MODEL_FREE``) already computed for this image."""

    spotter: object  # textboost.scoring.spotting spotter
    with_lpips: bool
    memo: dict


def evaluate_sample(
    model, label: str, sample: Sample, cfg: TextBoostConfig, scoring: Scoring,
    t_test: float = 0.0,
) -> SampleResult:  # fmt: skip
    """One image under one model: its rows (one per method) and what its crop panel shows.
    The container is decoded once: TextBoost (exactly ``textboost decompress``), the backbone
    (same latents, before the fusion block) and the overlay come from it. ``t_test`` > 0: the
    model's own side-info threshold (``eval.model_t_test``)."""
    from textboost.codec import baselines, container
    from textboost.codec.image_codec import decode_full, encode_image
    from textboost.codec.legibility import choose_words
    from textboost.text.filtering import filter_words

    fmt = cfg.shards.side_info_format
    words = filter_words(sample.candidates, t_test)[0] if t_test > 0 else sample.side_words
    t0 = time.perf_counter()
    chosen = choose_words(  # legible: the encoder's OCR looks at the decoder's output
        model, sample.image, words, cfg.eval.select, fmt, scoring.spotter, cfg.eval.select_margin
    )
    data = encode_image(model, sample.image, chosen.words, fmt, levels=chosen.levels)
    words = chosen.words
    t1 = time.perf_counter()
    decoded = decode_full(model, data)
    own = model.method  # textboost, or a baseline model (roi, taco_style): its own row
    recon = {own: decoded.image}
    timing = {"encode_s": t1 - t0, "decode_s": time.perf_counter() - t1}
    d = container.describe(data)
    rates = [_rate(own, d["bpp_total"], d["bpp_image"], d["bpp_side_info"], d["bpp_overhead"])]
    # a baseline model's container holds the backbone strings only: its decoding *is* the
    # backbone row, so no backbone / overlay pair for it
    if "backbone" in cfg.eval.baselines and own == "textboost":
        b = container.describe(baselines.backbone_container(data, fmt))
        recon["backbone"] = decoded.base
        rates.append(
            _rate("backbone", b["bpp_total"], b["bpp_image"], b["bpp_side_info"], b["bpp_overhead"])
        )
    if "overlay" in cfg.eval.baselines and model.needs_colour:
        recon["overlay"] = _overlay(decoded)
        rates.append(  # the same container: same bits, no learned fusion
            _rate("overlay", d["bpp_total"], d["bpp_image"], d["bpp_side_info"], d["bpp_overhead"])
        )
    rows = _rows(sample, label, rates, recon, cfg, scoring, d["bpp_total"])
    return SampleResult(rows, recon, data, decoded.guidance, words, timing)


def _rows(sample, label, rates, recon, cfg, scoring: Scoring, bpp: float) -> list[dict]:
    """Score every reconstruction (``recon`` gains the Pillow baselines at ``bpp``)."""
    memo = scoring.memo
    matched = [m for m in cfg.eval.baselines if m not in MODEL_FREE or m not in memo]
    coded, coded_recon, _ = baseline_rates(sample.image, matched, bpp)
    rates += coded
    recon.update(coded_recon)
    rows = []
    for rate in rates:
        scores = _score(sample, recon[rate["method"]], scoring.with_lpips, scoring.spotter)
        rows.append({"key": sample.key, "model": label, **rate, **scores})
        if rate["method"] in MODEL_FREE:
            memo[rate["method"]] = (rows[-1], recon[rate["method"]])
    for method in MODEL_FREE:  # computed under an earlier model of this image: the same row
        if method in cfg.eval.baselines and not any(r["method"] == method for r in rows):
            row, recon[method] = memo[method]
            rows.append({**row, "model": label})
    rows.sort(key=lambda r: METHODS.index(r["method"]))  # the order without the memo
    return rows


# ---------------------------------------------------------------- one task (a Ray worker)


@dataclass(frozen=True)
class EvalTask:
    """One image under the models whose lines are missing (small: shipped to a Ray worker)."""

    item: EvalItem
    cfg: TextBoostConfig
    original_id: str  # id of the image's "-" line (its original row, or its reject)
    # (uri, label, model identity, side-info threshold (0 = the evaluation's), line id)
    models: tuple[tuple[str, str, str, float, str], ...]
    crops: tuple[str, ...] = ()  # labels whose crop panel goes into their line
    with_lpips: bool = False


# (uri, device) -> (model identity, model): loaded once per process, again if the file changed
_MODELS: dict[tuple[str, str], tuple[str, object]] = {}


def _device(cfg: TextBoostConfig) -> str:
    if not cfg.eval.use_gpu:
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        raise TextBoostError("eval.use_gpu=true but this worker sees no CUDA device")
    return "cuda"


def _model(uri: str, identity: str, device: str):
    from textboost.model.checkpoint import load_checkpoint

    cached = _MODELS.get((uri, device))
    if cached is None or cached[0] != identity:
        _MODELS.pop((uri, device), None)
        model, meta = load_checkpoint(uri)
        if meta.get("model_identity") != identity:
            raise CheckpointError(
                f"{uri} changed during the evaluation (model {meta.get('model_identity')}, "
                f"the driver loaded {identity}); run it again"
            )
        cached = _MODELS[(uri, device)] = (identity, model.to(device))
    return cached[1]


def evaluate_item(task: EvalTask) -> list[dict]:
    """Task body: the lines of one image (its "-" line, then one per model), or its reject."""
    from textboost.scoring.spotting import get_spotter

    item, cfg = task.item, task.cfg
    base = {"v": ROWS_VERSION, "index": item.index, "key": item.key, "pid": os.getpid()}
    try:
        sample = prepare_sample(item, cfg)
    except (TextBoostError, FileNotFoundError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return [{**base, "id": task.original_id, "model": "-", "reject": reason}]
    spotter = get_spotter()
    original = [_original_row(sample, spotter)] if sample.gt is not None else []
    lines = [{**base, "id": task.original_id, "model": "-", "rows": original}]
    device = _device(cfg) if task.models else "cpu"
    scoring = Scoring(spotter, task.with_lpips, {})  # memo shared by this image's models
    for uri, label, identity, t_test, line_id in task.models:
        model = _model(uri, identity, device)
        t0 = time.perf_counter()
        try:
            result = evaluate_sample(model, label, sample, cfg, scoring, t_test)
        except CheckpointError:
            raise
        except TextBoostError as exc:  # e.g. an image the codec refuses: the image is a reject
            reason = f"{type(exc).__name__} under {label}: {exc}"
            return [{**base, "id": task.original_id, "model": "-", "reject": reason}]
        line = {**base, "id": line_id, "model": label, "rows": result.rows}
        line["timing"] = {**result.timing, "total_s": time.perf_counter() - t0}
        if label in task.crops:
            name, sheet = crop_panel(sample, label, result)
            buf = io.BytesIO()
            sheet.save(buf, format="PNG")
            line["crop"] = {"name": name, "png": base64.b64encode(buf.getvalue()).decode()}
        lines.append(line)
    return lines
