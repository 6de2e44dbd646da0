"""Evaluation benchmark: images/s with 1 and 2 Ray workers on the same images, the speedup,
and a projection of the wall time for TextOCR val (3,124 images) on a 64-CPU + 8-GPU cluster.

    python -m jobs.bench_eval [--limit 16] [--max-side 1024] [--model PATH|zoo:NAME|URI]

Synthetic TextOCR-format images are generated first (``--data``, reused when present). The
model is ``--model``, else an untrained hyperprior with the quickstart's sizes (speed does not
depend on the weights). Each run is a full ``run_evaluation`` (``eval.workers`` = 1, then 2,
fresh output folders, the Ray worker processes warmed up first on two images so both runs
find their models loaded) and must write the same ``per_image.csv`` bytes. Wall-clock
figures need otherwise idle cores: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

TEXTOCR_VAL = 3124
CLUSTER_CPUS, CLUSTER_GPUS = 64, 8


def _model(root: Path, uri: str) -> str:
    if uri:
        return uri
    import torch

    from textboost.config import ModelConfig
    from textboost.model import build_model
    from textboost.model.checkpoint import save_checkpoint

    path = root / "bench_model.pt"
    if not path.is_file():
        torch.manual_seed(0)
        mc = ModelConfig(backbone="hyperprior", N=128, M=192)
        save_checkpoint(path, build_model(mc), mc)
    return str(path)


def _data(root: Path, images: int, max_side: int) -> Path:
    from textboost.data.synth_sets import generate

    meta, want = root / "bench.json", {"images": images, "max_side": max_side, "seed": 5}
    if not (meta.is_file() and json.loads(meta.read_text()) == want):
        print(f"generating {images} synthetic images ({max_side} px) in {root} ...")
        generate(root, images, 5, fmt="textocr", max_side=max_side, min_side=max_side * 3 // 4)
        meta.write_text(json.dumps(want))
    return root


def _run(args, data: Path, model: str, out: Path, workers: int, limit: int) -> tuple[float, dict]:
    from pipeline.evaluation import run_evaluation
    from textboost.config import load_config

    cfg = load_config(
        None,
        [
            f"workdir={out}", f"eval.models=[{model}]", "eval.dataset.kind=textocr",
            f"eval.dataset.images={data / 'images'}", f"eval.dataset.annotations={data / 'textocr.json'}",
            f"eval.limit={limit}", f"eval.workers={workers}", "eval.crops=0", "eval.track=false",
            "eval.register=false", f"eval.out={out}", f"ray.num_cpus={args.cpus}",
            *args.overrides,
        ],
    )  # fmt: skip
    t0 = time.perf_counter()
    summary = run_evaluation(cfg)
    return time.perf_counter() - t0, summary


def _codec_share(out: Path) -> tuple[float, float]:
    """Mean seconds per image and model: codec (encode + decode) and whole (total_s)."""
    with open(out / "timings.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    codec = sum(float(r["encode_s"]) + float(r["decode_s"]) for r in rows) / len(rows)
    return codec, sum(float(r["total_s"]) for r in rows) / len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.bench_eval", description=__doc__)
    parser.add_argument("--limit", type=int, default=16, help="images per run (default 16)")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--model", default="", help="checkpoint, zoo:NAME or MLflow model URI")
    parser.add_argument("--data", default="", help="folder for the generated images (reused)")
    parser.add_argument("--cpus", type=int, default=2, help="embedded Ray's CPUs (default 2)")
    parser.add_argument(
        "overrides", nargs="*", help="config key=value (e.g. eval.baselines=[jpeg])"
    )
    args = parser.parse_args(argv)
    if args.limit < 2:
        parser.error("--limit must be >= 2 (two workers need two images)")

    import ray

    work = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    data = _data(Path(args.data) if args.data else work / "data", args.limit, args.max_side)
    model = _model(work, args.model)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        print("warming up the Ray worker processes (imports, model) ...")
        _run(args, data, model, work / "warmup", 2, 2)
        wall, summaries = {}, {}
        for workers in (1, 2):
            wall[workers], summaries[workers] = _run(
                args, data, model, work / f"w{workers}", workers, args.limit
            )
    finally:
        ray.shutdown()
    report(args, work, model, wall, summaries)
    shutil.rmtree(work / "warmup", ignore_errors=True)
    return 0


def report(args, work: Path, model: str, wall: dict, summaries: dict) -> None:
    same = (work / "w1" / "per_image.csv").read_bytes() == (
        work / "w2" / "per_image.csv"
    ).read_bytes()
    n = summaries[1]["images"]
    rate = {w: n / wall[w] for w in (1, 2)}
    speedup = rate[2] / rate[1]
    codec, per_model = _codec_share(work / "w1")
    per_image = wall[1] / n  # one worker: seconds of one CPU per image (all models, OCR, I/O)
    efficiency = speedup / 2
    cpu_rate = CLUSTER_CPUS * efficiency / per_image
    gpu_rate = (
        CLUSTER_CPUS * efficiency / max(per_image - codec * len(summaries[1]["models"]), 1e-9)
    )
    print(f"\nimages: {n} ({args.max_side} px long side), model {model}, outputs identical: {same}")
    print(f"1 Ray worker : {rate[1]:.3f} images/s ({wall[1]:.1f} s)")
    print(f"2 Ray workers: {rate[2]:.3f} images/s ({wall[2]:.1f} s)")
    print(f"speedup 1 -> 2 workers: {speedup:.2f}x (target >= 1.7x on idle cores)")
    print(f"per image and model: {per_model:.2f} s in the task, of which codec {codec:.2f} s")
    print(
        f"\nProjection, TextOCR val ({TEXTOCR_VAL} images), {CLUSTER_CPUS} CPUs + {CLUSTER_GPUS} GPUs:\n"
        f"  one worker's time per image t = wall(1 worker) / images = {per_image:.2f} s;\n"
        f"  scaling efficiency e = speedup(2) / 2 = {efficiency:.2f}, assumed to hold up to "
        f"{CLUSTER_CPUS} workers of 1 CPU (eval.workers={CLUSTER_CPUS}, eval.cpus_per_worker=1);\n"
        f"  codec on CPU:  wall = {TEXTOCR_VAL} * t / ({CLUSTER_CPUS} * e) = "
        f"{TEXTOCR_VAL / cpu_rate / 60:.1f} min;\n"
        f"  codec on GPU (eval.use_gpu, eval.gpus_per_worker={CLUSTER_GPUS / CLUSTER_CPUS:g}): the "
        f"codec's {codec:.2f} s per image and model leaves the CPUs, GPU time assumed not the "
        f"bottleneck: wall = {TEXTOCR_VAL} * (t - codec) / ({CLUSTER_CPUS} * e) = "
        f"{TEXTOCR_VAL / gpu_rate / 60:.1f} min.\n"
        "  Image size, model (ELIC is slower than the hyperprior) and baselines change t: measure "
        "with the model and settings the cluster will run."
    )
    print(f"outputs under {work}")
    if not same:
        raise SystemExit("per_image.csv differs between 1 and 2 workers")


if __name__ == "__main__":
    raise SystemExit(main())
