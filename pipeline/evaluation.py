"""Evaluation (paper 5.1.3): real bitstreams, image metrics, text-spotting F1, baselines.

For every image of ``eval.dataset`` (validation split) and every model of ``eval.models``
(several lambdas give a curve): the side-info words (annotations or RapidOCR, filtered with
``data.filter.t_test``) and the image are encoded into a real ``.tbx`` container, which is
decoded twice: with the fusion block (TextBoost, exactly ``textboost decompress``) and without
it (the backbone: same stage-1 weights, same latent strings, no guidance; its rate is the
container without side info). JPEG, WebP and AVIF are encoded at the TextBoost bpp of the same
image; ``avif_min`` is AVIF at its lowest quality (its rate floor) and ``avif_half`` AVIF of the
2x-downscaled image at the matched bpp (over the full-size pixels), upscaled back
(``textboost.codec.baselines``). Each reconstruction gets PSNR, MS-SSIM, LPIPS (when available) and
RapidOCR word spotting, scored against the ground truth with the ICDAR 2015 protocol
(``textboost.scoring.f1``); the originals are spotted too (the ceiling).

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
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pipeline.eval_data import list_items, threshold
from pipeline.eval_image import EvalTask, evaluate_item
from pipeline.eval_outputs import METHODS, aggregate, mean, write_json, write_outputs
from pipeline.eval_rows import ROWS_FILE, RowStore, config_key, line_id
from textboost.config import TextBoostConfig
from textboost.errors import TextBoostError


def _local_out(out: str) -> tuple[str, bool]:
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


@dataclass
class Models:
    """The evaluated models, in ``eval.models`` order: (uri, label, identity, threshold) each,
    and their metadata by label (summary's ``model_meta``)."""

    entries: list[tuple[str, str, str, float]] = field(default_factory=list)
    meta: dict[str, dict] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [m[1] for m in self.entries]


def load_models(cfg: TextBoostConfig) -> Models:
    """Every model of ``eval.models``, loaded once in the driver (a bad URI fails here)."""
    from textboost.model.checkpoint import load_checkpoint

    if not cfg.eval.models:
        raise TextBoostError("eval.models is empty: give checkpoint paths or MLflow model URIs")
    models = Models()
    for i, uri in enumerate(cfg.eval.models):
        _, meta = load_checkpoint(uri)
        label = model_label(i, meta, uri)
        t_test = float(cfg.eval.model_t_test[i]) if cfg.eval.model_t_test else 0.0
        keep = ("model_identity", "stage", "manifest_sha256", "run_config")
        method = (meta.get("model_config") or {}).get("kind", "textboost")
        models.meta[label] = {"uri": uri, "method": method, **{k: meta.get(k) for k in keep}}
        models.meta[label] |= {"t_test": t_test or threshold(cfg), "backbone": _family(meta)}
        models.entries.append((uri, label, str(meta.get("model_identity")), t_test))
    return models


@dataclass
class Listing:
    """What the driver knows of each image: index -> (key, its "-" line id, one line id per
    model), the fingerprint over the set, and how many images were computed or reused."""

    seen: dict[int, tuple[str, str, list[str]]] = field(default_factory=dict)
    fingerprint: object = field(default_factory=hashlib.sha256)
    counts: dict[str, int] = field(default_factory=lambda: {"computed": 0, "reused": 0})


def _tasks(cfg, models: Models, store: RowStore, listing: Listing, key: str, progress,
           with_lpips: bool) -> Iterator[EvalTask]:  # fmt: skip
    """A task for each image with a missing line (every listed image enters ``listing``)."""
    items, _ = list_items(cfg)
    for item in items:
        listing.fingerprint.update(item.fingerprint.encode() + b"\n")
        original_id = line_id(key, "-", "-", item.fingerprint)
        ids = [line_id(key, *m[1:3], item.fingerprint, m[3]) for m in models.entries]
        listing.seen[item.index] = (item.key, original_id, ids)
        todo = tuple(m + (i,) for m, i in zip(models.entries, ids) if i not in store.lines)
        done = store.lines.get(original_id)
        if done is not None and (done.get("reject") or not todo):
            listing.counts["reused"] += 1
            progress.update(1)
            continue
        crops = tuple(models.labels) if item.index < cfg.eval.crops else ()
        yield EvalTask(item, cfg, original_id, todo, crops, with_lpips)


def _crop_tasks(cfg, models: Models, store: RowStore, listing: Listing,
                with_lpips: bool) -> Iterator[EvalTask]:  # fmt: skip
    """Crop panels of the first ``eval.crops`` evaluable images whose lines lack one (an
    earlier image rejected, or eval.crops raised since the lines were written)."""
    seen = listing.seen
    evaluable = [i for i in sorted(seen) if not store.lines[seen[i][1]].get("reject")]
    items = {item.index: item for item in list_items(cfg)[0] if item.index in seen}
    for i in evaluable[: cfg.eval.crops]:
        want = tuple(
            m[1] for m, lid in zip(models.entries, seen[i][2]) if "crop" not in store.lines[lid]
        )
        if want:
            todo = tuple(m + (lid,) for m, lid in zip(models.entries, seen[i][2]) if m[1] in want)
            yield EvalTask(items[i], cfg, seen[i][1], todo, want, with_lpips)


def _run(cfg: TextBoostConfig, tasks: Iterator[EvalTask], on_done) -> None:
    from pipeline import executor

    executor.run_tasks(
        evaluate_item, tasks, on_done,
        executor="ray" if cfg.eval.workers > 0 else "local", ray_cfg=cfg.ray,
        cpus_per_task=cfg.eval.cpus_per_worker,
        gpus_per_task=cfg.eval.gpus_per_worker if cfg.eval.use_gpu else 0.0,
        max_in_flight=max(cfg.eval.workers, 1), max_retries=1, keep_results=False,
    )  # fmt: skip


def _compute(cfg, models: Models, store: RowStore, with_lpips: bool, sync) -> Listing:
    """Compute every missing line into ``store`` (a stopped run keeps what it wrote)."""
    from tqdm import tqdm

    listing, key = Listing(), config_key(cfg, with_lpips)
    total = list_items(cfg)[1]
    progress = tqdm(total=total, desc="evaluate", unit="img", mininterval=5.0, smoothing=0.1)

    def on_done(lines: list[dict]) -> None:
        for line in lines:
            store.add(line)
        listing.counts["computed"] += 1
        progress.update(1)

    try:
        _run(cfg, _tasks(cfg, models, store, listing, key, progress, with_lpips), on_done)
        progress.close()
        _run(cfg, _crop_tasks(cfg, models, store, listing, with_lpips), on_done)
    except BaseException:
        progress.close()
        store.close()  # every line written so far stays for the next run
        if sync is not None:
            sync(store.path)
        raise
    progress.close()
    return listing


def _collect(store: RowStore, listing: Listing, models: Models, crops_n: int) -> dict:
    """The rows, rejects, timings and crop panels of the listed images, in listing order."""
    seen = listing.seen
    evaluable = [i for i in sorted(seen) if not store.lines[seen[i][1]].get("reject")]
    out: dict = {"rows": [], "rejects": [], "timings": [], "crops": [], "evaluable": evaluable}
    for i in sorted(seen):
        line = store.lines[seen[i][1]]
        if line.get("reject"):
            out["rejects"].append({"key": seen[i][0], "reason": line["reject"]})
        else:
            out["rows"].extend(line["rows"])
    for m, label in enumerate(models.labels):
        for i in evaluable:
            line = store.lines[seen[i][2][m]]
            out["rows"].extend(line["rows"])
            out["timings"].append({"key": seen[i][0], "model": label, **line["timing"]})
    for i in evaluable[:crops_n]:
        for m in range(len(models.labels)):
            crop = store.lines[seen[i][2][m]]["crop"]
            out["crops"].append((crop["name"], base64.b64decode(crop["png"])))
    return out


def evaluate(cfg: TextBoostConfig, out_dir: str, sync: Callable[[str], None] | None = None) -> dict:
    """The evaluation itself (no MLflow): writes the outputs into ``out_dir``; returns the
    summary. Lines already in ``out_dir/rows.jsonl`` for the same settings are reused."""
    from textboost.scoring import metrics

    t_start = time.perf_counter()
    with_lpips = bool(cfg.eval.lpips) and metrics.lpips_available()
    models = load_models(cfg)
    store = RowStore(os.path.join(out_dir, ROWS_FILE), sync)
    listing = _compute(cfg, models, store, with_lpips, sync)
    seen = listing.seen
    store.close(
        [lid for i in sorted(seen) for lid in (seen[i][1], *seen[i][2]) if lid in store.lines]
    )
    got = _collect(store, listing, models, cfg.eval.crops)
    if not got["evaluable"]:
        raise TextBoostError(f"no evaluable images in eval.dataset ({len(seen)} rejected)")
    means = aggregate(got["rows"])
    own = {meta["method"] for meta in models.meta.values()}
    textboost = "textboost" in own  # backbone / overlay rows: TextBoost models only
    methods = [
        m for m in METHODS
        if m in own or (m in cfg.eval.baselines and (textboost or m not in ("backbone", "overlay")))
    ]  # fmt: skip
    families = {label: meta["backbone"] for label, meta in models.meta.items()}
    write_outputs(out_dir, got["rows"], means, models.labels, methods, got["crops"],
                  got["timings"], got["rejects"], families)  # fmt: skip
    elapsed, n = time.perf_counter() - t_start, len(got["evaluable"])
    summary = {
        "models": models.labels, "model_meta": models.meta, "methods": methods, "means": means,
        "images": n, "rejected": len(got["rejects"]),
        "eval_fingerprint": listing.fingerprint.hexdigest(),
        "lpips": "available" if with_lpips else "n/a", "seconds": elapsed,
        "seconds_per_image": elapsed / n,
        "seconds_per_image_per_model": mean([t["total_s"] for t in got["timings"]]),
        "workers": cfg.eval.workers, "images_computed": listing.counts["computed"],
        "images_reused": listing.counts["reused"],
    }  # fmt: skip
    write_json(os.path.join(out_dir, "summary.json"), summary)
    return summary


def run_evaluation(cfg: TextBoostConfig) -> dict:
    """Evaluate, write ``eval.out``, and (``eval.track``) log it all to an MLflow run; with
    ``eval.register`` each evaluated checkpoint becomes a registered pyfunc version."""
    from pipeline.model_uris import check_model_uris

    check_model_uris(cfg.eval.models, cfg.mlflow.tracking_uri, "eval.models")  # before any work
    out_dir, upload = _local_out(cfg.eval.out)
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
