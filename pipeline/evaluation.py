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

Execution (``eval.workers``): 0 evaluates in this process; N > 0 runs N Ray tasks at once over
``pipeline.executor`` (one image under every model per task; models loaded once per worker
process; the codec on a GPU with ``eval.use_gpu``, OCR, metrics and baselines on the task's
CPUs). Each finished (image, model) becomes one line of ``<out>/rows.jsonl`` (plus one line per
image for its original and rejects), keyed by a hash of everything that determines it (the
evaluation settings, the model's identity, the image's inputs): a stopped evaluation run again
with the same settings computes only the missing lines, and stale lines are never reused. The
outputs are computed from the lines, in listing order: the same bytes for any number of
workers. No decoded image outlives its task; crop panels travel as PNG bytes in their line.
``eval.dataset.kind: shards`` reads the built val shards (``<images or shards.out>``, the
manifest's ``val`` split): image bytes as built, side info from ``ocr.json`` (the words the
val split sent, filtered again with the evaluation's threshold), and F1 scored against those
words (shards keep no other annotation).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from PIL import Image

from pipeline.eval_outputs import aggregate, crop_panel, mean, write_json, write_outputs
from textboost.config import SourceConfig, TextBoostConfig
from textboost.errors import CheckpointError, TextBoostError
from textboost.words import Word

# each model's own row: textboost, or a baseline model's kind (roi, taco_style)
MODEL_METHODS = ("textboost", "roi", "taco_style")
METHODS = (*MODEL_METHODS, "backbone", "overlay", "jpeg", "webp", "avif", "avif_min", "avif_half")
# baselines whose row does not depend on the model (AVIF at its lowest quality): computed
# once per image, the same row under every model
MODEL_FREE = ("avif_min",)
ROWS_FILE = "rows.jsonl"
ROWS_VERSION = 1
ROWS_SYNC_S = 60.0  # remote eval.out: upload rows.jsonl at most this often while running


@dataclass
class Sample:
    key: str
    image: Image.Image
    gt: list[Word] | None  # None: the dataset has no ground truth (F1 not available)
    side_words: list[Word] = field(default_factory=list)  # filtered side-info words
    candidates: list[Word] = field(default_factory=list)  # before filtering (eval.model_t_test)


# ---------------------------------------------------------------- inputs


def eval_source(cfg: TextBoostConfig) -> SourceConfig:
    """The dataset section with ``eval.limit`` applied; ground truth always from annotations."""
    src = copy.deepcopy(cfg.eval.dataset)
    if cfg.eval.limit > 0:
        src.limit = cfg.eval.limit
    if src.kind != "folder":
        src.ocr = "annotations"
    if src.kind == "shards" and not src.images:
        src.images = cfg.shards.out
    return src


@dataclass(frozen=True)
class EvalItem:
    """One image to evaluate: a source reference (the task reads it) or a shard sample's
    fields; ``fingerprint`` changes whenever the image's inputs change (row keys)."""

    index: int  # position in the listing: the order of every output
    key: str
    fingerprint: str
    ref: object | None = None  # pipeline.sources.SampleRef
    fields: dict | None = None  # shard sample: field name -> bytes


def list_items(cfg: TextBoostConfig) -> tuple[Iterator[EvalItem], int]:
    """The images of ``eval.dataset`` (``eval.limit`` applied), lazily, and how many."""
    src = eval_source(cfg)
    if src.kind == "shards":
        from pipeline.loader import iter_samples
        from pipeline.shards import read_manifest, shard_urls

        count = int(read_manifest(src.images)["splits"].get("val", {}).get("count", 0))
        urls = shard_urls(src.images, "val")
        count = min(count, src.limit) if src.limit > 0 else count

        def from_shards() -> Iterator[EvalItem]:
            for i, sample in enumerate(iter_samples(urls)):
                if i >= count:
                    return
                h = hashlib.sha256()
                for name in sorted(k for k in sample if not k.startswith("__")):
                    h.update(name.encode() + b"\0" + sample[name] + b"\0")
                key = sample["__key__"]
                fields = {k: v for k, v in sample.items() if not k.startswith("__")}
                yield EvalItem(i, key, f"shard\t{key}\t{h.hexdigest()[:32]}", fields=fields)

        return from_shards(), count
    from pipeline.sources import list_source

    refs = list_source(src, "val", cfg.data.synth)
    items = (EvalItem(i, r.key, r.fingerprint(), ref=r) for i, r in enumerate(refs))
    return items, len(refs)


def _threshold(cfg: TextBoostConfig) -> float:
    from pipeline.shards import sample_spec

    spec = sample_spec(cfg, "val")  # T_test, as the val shards (or eval.t_test)
    return cfg.eval.t_test if cfg.eval.t_test > 0 else spec.threshold


def prepare_sample(item: EvalItem, cfg: TextBoostConfig) -> Sample:
    """The decoded image, its ground truth and its filtered side-info words; a bad input
    raises ``TextBoostError`` (or ``FileNotFoundError``): a reject."""
    from pipeline.image_io import decode_image
    from pipeline.sample_words import annotation_words, ocr_words
    from pipeline.samples import load_input
    from pipeline.shards import sample_spec
    from textboost.errors import ShardError
    from textboost.filtering import filter_words

    if item.fields is not None:
        data = next((item.fields[k] for k in ("jpg", "png") if k in item.fields), None)
        if data is None or "ocr.json" not in item.fields:
            raise ShardError(f"sample {item.key}: no image or no ocr.json; rebuild the shard")
        try:
            words = [Word.from_json(w) for w in json.loads(item.fields["ocr.json"])["words"]]
            meta = json.loads(item.fields.get("meta.json", b"{}"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ShardError(f"sample {item.key}: bad ocr.json or meta.json ({exc})") from None
        gt = None if meta.get("words_from") == "none" else words
    else:
        data, words = load_input(item.ref, sample_spec(cfg, "val"))
        gt = None
    image = decode_image(data, full=True)[0].convert("RGB")
    if item.ref is not None:
        gt = words if words is not None else annotation_words(item.ref, item.ref.image)
    side = (gt or []) if cfg.eval.ocr == "annotations" else ocr_words(image)
    kept, _ = filter_words(side, _threshold(cfg))
    return Sample(item.key, image, gt, kept, list(side))


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


def _overlay(decoded) -> Image.Image:
    """The no-learning baseline of a colour container, from its one decoding
    (``codec.decode_full``): the backbone's output with each sent word's box filled with its
    background colour and the guidance glyphs drawn in its text colour
    (``textboost.colours.overlay``): what the side info gives without the fusion block."""
    import numpy as np

    from textboost import colours

    cmap, box = decoded.maps
    return Image.fromarray(colours.overlay(np.asarray(decoded.base), cmap, box))


def evaluate_sample(
    model, label: str, sample: Sample, cfg: TextBoostConfig, ctx: dict, t_test: float = 0.0
) -> list[dict]:
    """Rows (one per method) of one image under one model. ``ctx`` holds the spotter, the
    LPIPS switch and ``memo`` (rows that do not depend on the model, shared by the models of
    one image); the reconstructions, container, guidance map and timings are left in it for
    the caller. The container is decoded once: TextBoost (exactly ``textboost decompress``),
    the backbone (same latents, before the fusion block) and the overlay come from it.
    ``t_test`` > 0: the model's own side-info threshold (``eval.model_t_test``)."""
    from textboost import baselines, container
    from textboost.codec import decode_full, encode_image
    from textboost.filtering import filter_words

    fmt = cfg.shards.side_info_format
    words = filter_words(sample.candidates, t_test)[0] if t_test > 0 else sample.side_words
    t0 = time.perf_counter()
    data = encode_image(model, sample.image, words, fmt)
    t1 = time.perf_counter()
    decoded = decode_full(model, data)
    own = model.method  # textboost, or a baseline model (roi, taco_style): its own row
    recon = {own: decoded.image}
    ctx["timing"] = {"encode_s": t1 - t0, "decode_s": time.perf_counter() - t1}
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
    memo = ctx.setdefault("memo", {})
    matched = [m for m in cfg.eval.baselines if m not in MODEL_FREE or m not in memo]
    coded, coded_recon, _ = baseline_rates(sample.image, matched, d["bpp_total"])
    rates += coded
    recon.update(coded_recon)
    rows = []
    for rate in rates:
        scores = _score(sample, recon[rate["method"]], ctx["lpips"], ctx["spotter"])
        rows.append({"key": sample.key, "model": label, **rate, **scores})
        if rate["method"] in MODEL_FREE:
            memo[rate["method"]] = (rows[-1], recon[rate["method"]])
    for method in MODEL_FREE:  # computed under an earlier model of this image: the same row
        if method in cfg.eval.baselines and not any(r["method"] == method for r in rows):
            row, recon[method] = memo[method]
            rows.append({**row, "model": label})
    rows.sort(key=lambda r: METHODS.index(r["method"]))  # the order without the memo
    ctx["recon"], ctx["container"], ctx["guidance"] = recon, data, decoded.guidance
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
    from textboost.checkpoint import load_checkpoint

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
    from textboost.spotting import get_spotter

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
    memo: dict = {}  # model-free rows (MODEL_FREE), shared by this image's models
    for uri, label, identity, t_test, line_id in task.models:
        model = _model(uri, identity, device)
        ctx: dict = {"lpips": task.with_lpips, "spotter": spotter, "memo": memo}
        t0 = time.perf_counter()
        try:
            rows = evaluate_sample(model, label, sample, cfg, ctx, t_test)
        except CheckpointError:
            raise
        except TextBoostError as exc:  # e.g. an image the codec refuses: the image is a reject
            reason = f"{type(exc).__name__} under {label}: {exc}"
            return [{**base, "id": task.original_id, "model": "-", "reject": reason}]
        line = {**base, "id": line_id, "model": label, "rows": rows}
        line["timing"] = {**ctx["timing"], "total_s": time.perf_counter() - t0}
        if label in task.crops:
            name, sheet = crop_panel(sample, label, ctx, rows)
            buf = io.BytesIO()
            sheet.save(buf, format="PNG")
            line["crop"] = {"name": name, "png": base64.b64encode(buf.getvalue()).decode()}
        lines.append(line)
    return lines


# ---------------------------------------------------------------- the rows file


class RowStore:
    """``rows.jsonl``: the lines read back from an earlier run (a torn last line from a kill
    is skipped) plus the new ones, appended and flushed as they arrive. ``sync`` (remote
    ``eval.out``) uploads the file at most every ``ROWS_SYNC_S`` seconds."""

    def __init__(self, path: str, sync: Callable[[str], None] | None = None):
        self.path, self.sync, self.last_sync = path, sync, time.monotonic()
        self.lines: dict[str, dict] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for text in f:
                    try:
                        line = json.loads(text)
                    except ValueError:
                        continue  # torn write of a killed run
                    if isinstance(line, dict) and line.get("v") == ROWS_VERSION and "id" in line:
                        self.lines[line["id"]] = line
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        if self.file.tell() > 0:
            self.file.write("\n")  # a torn last line stays a line of its own

    def add(self, line: dict) -> None:
        self.lines[line["id"]] = line
        self.file.write(json.dumps(line, sort_keys=True) + "\n")
        self.file.flush()
        if self.sync is not None and time.monotonic() - self.last_sync > ROWS_SYNC_S:
            self.sync(self.path)
            self.last_sync = time.monotonic()

    def close(self, keep: list[str] | None = None) -> None:
        """Close; with ``keep`` (a finished evaluation), rewrite the file with those lines
        only, in that order (stale and torn lines dropped)."""
        self.file.close()
        if keep is None:
            return
        tmp = f"{self.path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(self.lines[i], sort_keys=True) + "\n" for i in keep)
        os.replace(tmp, self.path)


def _config_key(cfg: TextBoostConfig, with_lpips: bool) -> str:
    """What, besides the model and the image, determines a line's rows."""
    import textboost
    from textboost.config import to_dict

    execution = ("models", "model_t_test", "out", "limit", "crops", "track", "register")
    execution += ("workers",)
    execution += ("cpus_per_worker", "gpus_per_worker", "dataset")
    src = eval_source(cfg)
    key = {
        "eval": {k: v for k, v in to_dict(cfg.eval).items() if k not in execution},
        "dataset": [src.kind, src.ocr],
        "threshold": _threshold(cfg),
        "side_info_format": cfg.shards.side_info_format,
        "synth": to_dict(cfg.data.synth),
        "lpips": with_lpips,
        "version": textboost.__version__,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _line_id(
    config_key: str, label: str, identity: str, fingerprint: str, t_test: float = 0.0
) -> str:
    key = [ROWS_VERSION, config_key, label, identity, fingerprint]
    blob = json.dumps(key + [t_test] if t_test > 0 else key)  # a model's own threshold
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# ---------------------------------------------------------------- run


def _stage_dir(out: str) -> tuple[str, bool]:
    """Local folder to write into, and whether it must be uploaded to ``out`` afterwards."""
    if "://" in out and not out.startswith("file://"):
        return tempfile.mkdtemp(prefix="textboost-eval-"), True
    local = out[len("file://") :] if out.startswith("file://") else out
    os.makedirs(local, exist_ok=True)
    return local, False


def _remote_rows(out: str, local_dir: str) -> Callable[[str], None]:
    """A remote ``eval.out``: fetch its ``rows.jsonl`` (resume) into ``local_dir``; returns
    the function that uploads the local file back while the evaluation runs."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(out)
    remote = f"{root.rstrip('/')}/{ROWS_FILE}"
    if fs.exists(remote):
        fs.get_file(remote, os.path.join(local_dir, ROWS_FILE))

    def sync(path: str) -> None:
        fs.makedirs(root, exist_ok=True)
        fs.put_file(path, remote)

    return sync


def _family(meta: dict) -> str:
    """A model's backbone architecture (hyperprior, elic, tcm), from its training config."""
    model = meta.get("model_config") or ((meta.get("run_config") or {}).get("model")) or {}
    return str(model.get("backbone", ""))


def model_label(index: int, meta: dict, uri: str = "") -> str:
    """``m<index>`` plus the zoo name, or the comparison model's kind (roi, taco, tcm) and the
    training lambda when the checkpoint records them."""
    if uri.startswith("zoo:"):
        return f"m{index}-{uri[4:]}"
    lmbda = ((meta.get("run_config") or {}).get("train") or {}).get("lmbda")
    model = meta.get("model_config") or {}
    kind = {"roi": "-roi", "taco_style": "-taco"}.get(model.get("kind"), "")
    kind += "-tcm" if model.get("backbone") == "tcm" else ""  # a comparison model: say which
    return f"m{index}{kind}" + (f"-lambda{lmbda:g}" if isinstance(lmbda, int | float) else "")


def evaluate(cfg: TextBoostConfig, out_dir: str, sync: Callable[[str], None] | None = None) -> dict:
    """The evaluation itself (no MLflow): writes the outputs into ``out_dir``; returns the
    summary. Lines already in ``out_dir/rows.jsonl`` for the same settings are reused."""
    from tqdm import tqdm

    from pipeline import executor
    from textboost import metrics
    from textboost.checkpoint import load_checkpoint

    if not cfg.eval.models:
        raise TextBoostError("eval.models is empty: give checkpoint paths or MLflow model URIs")
    t_start = time.perf_counter()
    with_lpips = bool(cfg.eval.lpips) and metrics.lpips_available()
    labels, models, model_meta = [], [], {}
    for i, uri in enumerate(cfg.eval.models):  # in the driver: a bad URI fails here, once
        _, meta = load_checkpoint(uri)
        label = model_label(i, meta, uri)
        labels.append(label)
        keep = ("model_identity", "stage", "manifest_sha256", "run_config")
        method = (meta.get("model_config") or {}).get("kind", "textboost")
        t_test = float(cfg.eval.model_t_test[i]) if cfg.eval.model_t_test else 0.0
        model_meta[label] = {"uri": uri, "method": method, **{k: meta.get(k) for k in keep}}
        model_meta[label] |= {"t_test": t_test or _threshold(cfg), "backbone": _family(meta)}
        models.append((uri, label, str(meta.get("model_identity")), t_test))
    config_key = _config_key(cfg, with_lpips)
    store = RowStore(os.path.join(out_dir, ROWS_FILE), sync)
    items, total = list_items(cfg)
    seen: dict[int, tuple[str, str, list[str]]] = {}  # index -> (key, "-" line id, model ids)
    fingerprint = hashlib.sha256()
    progress = tqdm(total=total, desc="evaluate", unit="img", mininterval=5.0, smoothing=0.1)
    counts = {"computed": 0, "reused": 0}

    def tasks(only: dict[int, tuple[str, ...]] | None = None) -> Iterator[EvalTask]:
        for item in items if only is None else list_items(cfg)[0]:
            if only is not None:
                if item.index in only:
                    ids = seen[item.index]
                    todo = tuple(
                        m + (i,) for m, i in zip(models, ids[2]) if m[1] in only[item.index]
                    )
                    yield EvalTask(item, cfg, ids[1], todo, only[item.index], with_lpips)
                continue
            fingerprint.update(item.fingerprint.encode() + b"\n")
            original_id = _line_id(config_key, "-", "-", item.fingerprint)
            ids = [_line_id(config_key, *m[1:3], item.fingerprint, m[3]) for m in models]
            seen[item.index] = (item.key, original_id, ids)
            todo = tuple(m + (i,) for m, i in zip(models, ids) if i not in store.lines)
            done = store.lines.get(original_id)
            if done is not None and (done.get("reject") or not todo):
                counts["reused"] += 1
                progress.update(1)
                continue
            crops = tuple(m[1] for m in models) if item.index < cfg.eval.crops else ()
            yield EvalTask(item, cfg, original_id, todo, crops, with_lpips)

    def on_done(lines: list[dict]) -> None:
        for line in lines:
            store.add(line)
        counts["computed"] += 1
        progress.update(1)

    def run(stream: Iterator[EvalTask]) -> None:
        executor.run_tasks(
            evaluate_item, stream, on_done,
            executor="ray" if cfg.eval.workers > 0 else "local", ray_cfg=cfg.ray,
            cpus_per_task=cfg.eval.cpus_per_worker,
            gpus_per_task=cfg.eval.gpus_per_worker if cfg.eval.use_gpu else 0.0,
            max_in_flight=max(cfg.eval.workers, 1), max_retries=1, keep_results=False,
        )  # fmt: skip

    try:
        run(tasks())
        progress.close()
        evaluable = [i for i in sorted(seen) if not store.lines[seen[i][1]].get("reject")]
        # crop panels of the first eval.crops evaluable images (an earlier image rejected, or
        # eval.crops raised since the lines were written: those are evaluated again)
        want = {
            i: tuple(m[1] for m, lid in zip(models, seen[i][2]) if "crop" not in store.lines[lid])
            for i in evaluable[: cfg.eval.crops]
        }
        want = {i: labels_ for i, labels_ in want.items() if labels_}
        if want:
            run(tasks(want))
    except BaseException:
        progress.close()
        store.close()  # every line written so far stays for the next run
        if sync is not None:
            sync(store.path)
        raise
    progress.close()
    ids = [lid for i in sorted(seen) for lid in (seen[i][1], *seen[i][2])]
    store.close([lid for lid in ids if lid in store.lines])  # a reject has no model lines
    if not evaluable:
        raise TextBoostError(f"no evaluable images in eval.dataset ({len(seen)} rejected)")
    rows, rejects, timings, crops = [], [], [], []
    for i in sorted(seen):
        line = store.lines[seen[i][1]]
        if line.get("reject"):
            rejects.append({"key": seen[i][0], "reason": line["reject"]})
        else:
            rows.extend(line["rows"])
    for m, label in enumerate(labels):
        for i in evaluable:
            line = store.lines[seen[i][2][m]]
            rows.extend(line["rows"])
            timings.append({"key": seen[i][0], "model": label, **line["timing"]})
    for i in evaluable[: cfg.eval.crops]:
        for m in range(len(labels)):
            crop = store.lines[seen[i][2][m]]["crop"]
            crops.append((crop["name"], base64.b64decode(crop["png"])))
    means = aggregate(rows)
    own = {meta["method"] for meta in model_meta.values()}
    textboost = "textboost" in own  # backbone / overlay rows: TextBoost models only
    methods = [
        m for m in METHODS
        if m in own or (m in cfg.eval.baselines and (textboost or m not in ("backbone", "overlay")))
    ]  # fmt: skip
    families = {label: meta["backbone"] for label, meta in model_meta.items()}
    write_outputs(out_dir, rows, means, labels, methods, crops, timings, rejects, families)
    elapsed = time.perf_counter() - t_start
    summary = {
        "models": labels, "model_meta": model_meta, "methods": methods, "means": means,
        "images": len(evaluable), "rejected": len(rejects),
        "eval_fingerprint": fingerprint.hexdigest(),
        "lpips": "available" if with_lpips else "n/a", "seconds": elapsed,
        "seconds_per_image": elapsed / len(evaluable),
        "seconds_per_image_per_model": mean([t["total_s"] for t in timings]),
        "workers": cfg.eval.workers, "images_computed": counts["computed"],
        "images_reused": counts["reused"],
    }  # fmt: skip
    write_json(os.path.join(out_dir, "summary.json"), summary)
    return summary


def run_evaluation(cfg: TextBoostConfig) -> dict:
    """Evaluate, write ``eval.out``, and (``eval.track``) log it all to an MLflow run; with
    ``eval.register`` each evaluated checkpoint becomes a registered pyfunc version."""
    from pipeline.model_uris import check_model_uris

    check_model_uris(cfg.eval.models, cfg.mlflow.tracking_uri, "eval.models")  # before any work
    out_dir, upload = _stage_dir(cfg.eval.out)
    sync = _remote_rows(cfg.eval.out, out_dir) if upload else None
    try:
        if not cfg.eval.track:
            summary = evaluate(cfg, out_dir, sync)
        else:
            summary = _tracked(cfg, out_dir, sync)
        if upload:
            import fsspec

            fs, root = fsspec.core.url_to_fs(cfg.eval.out)
            fs.put(out_dir.rstrip("/") + "/", root, recursive=True)
    finally:
        if upload:
            shutil.rmtree(out_dir, ignore_errors=True)
    summary["out"] = cfg.eval.out
    return summary


def _tracked(cfg: TextBoostConfig, out_dir: str, sync=None) -> dict:
    import mlflow

    from pipeline import registry, tracking
    from textboost.config import config_hash, flatten, to_dict

    tracking.setup_mlflow(cfg.mlflow)
    with mlflow.start_run(run_name="evaluate") as run:
        params = {k: str(v)[:6000] for k, v in flatten(to_dict(cfg)).items()}
        mlflow.log_params(params)
        mlflow.set_tags(
            {f"{tracking.TAG}kind": "evaluate", f"{tracking.TAG}eval_config_hash": config_hash(cfg)}
        )
        summary = evaluate(cfg, out_dir, sync)
        mlflow.set_tag(f"{tracking.TAG}eval_fingerprint", summary["eval_fingerprint"])
        tracking.log_summary(summary)
        mlflow.log_artifacts(out_dir, artifact_path="eval")
        summary["run_id"] = run.info.run_id
        if cfg.eval.register:
            summary["registered"] = registry.register_evaluated(cfg, summary)
    return summary
