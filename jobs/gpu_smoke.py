"""``python -m jobs.gpu_smoke [--cpu]``: a few minutes that show the pipeline works on a GPU.

On one GPU, with the project's own entry points (``load_config``, ``build_shards``,
``run_training``, ``textboost.codec.image_codec``), in a scratch workdir:

1. synthetic scene-text shards (train and val splits) and the training loader's samples/s
   (``jobs.bench_train.loader_throughput``);
2. stage 1 with NCCL and bf16: rank 0 is killed once (``TEXTBOOST_FAULT_TRAIN_STEP``,
   ``pipeline.faults``) and Ray Train resumes from the last checkpoint (optimizer state back
   on the GPU);
3. stage 1 again in fp32 (bf16 off);
4. stage 2 from the bf16 run's checkpoint (backbone frozen, fusion block trained);
5. one val image encoded into a container and decoded, on the GPU.

It prints the device, library versions, each run's step rate and the loader's samples/s, and
exits non-zero if any part fails. Without a GPU it says so and exits 2, unless ``--cpu`` runs
the same code path on the CPU (gloo, bf16 autocast on CPU). ``--help`` needs no GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

NO_GPU_EXIT = 2
REPORT: list[str] = []  # the figures, printed as they come and again at the end


def say(line: str) -> None:
    REPORT.append(line)
    print(line, flush=True)


def versions() -> dict[str, str]:
    """Library versions and the device this process sees."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("compressai", "ray", "mlflow", "webdataset", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    out["cuda"] = str(torch.version.cuda)
    if torch.cuda.is_available():
        out["device"] = f"{torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
        out["cudnn"] = str(torch.backends.cudnn.version())
        nccl = torch.cuda.nccl.version() if hasattr(torch.cuda, "nccl") else None
        out["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
        out["bf16"] = str(torch.cuda.is_bf16_supported())
    else:
        out["device"] = f"CPU ({os.cpu_count()} cores)"
    return out


def base_overrides(args: argparse.Namespace, workdir: str, use_gpu: bool) -> list[str]:
    side = 2 * args.crop_size
    return [
        f"workdir={workdir}", f"model.backbone={args.backbone}",
        *([] if args.backbone == "elic" else ["model.N=32", "model.M=32"]),
        f"data.synth.images={args.images}", f"data.synth.min_side={args.crop_size}",
        f"data.synth.max_side={side}", "data.synth.words_min=2", "shards.samples_per_shard=4",
        "shards.executor=local", "shards.progress=false",
        f"train.use_gpu={str(use_gpu).lower()}", "train.num_workers=1",
        f"train.batch_size={args.batch_size}", f"train.crop_size={args.crop_size}",
        f"train.loader_workers={args.loader_workers}", "train.lr_schedule=constant",
        "train.log_every=1", "train.val_crops=2", "mlflow.experiment=gpu_smoke",
    ]  # fmt: skip


def step_rate(cfg, result: dict) -> float:
    """Median steps/s of a run (from its per-step ``train.images_per_s`` in MLflow)."""
    from mlflow.tracking import MlflowClient

    history = MlflowClient(cfg.mlflow.tracking_uri).get_metric_history(
        result["run_id"], "train.images_per_s"
    )
    rates = [h.value for h in history]
    per_step = cfg.train.batch_size * cfg.train.num_workers
    return statistics.median(rates) / per_step if rates else float("nan")


def train(base: list[str], *extra: str, fault_step: int = -1) -> tuple[object, dict, float]:
    """One training run; ``fault_step``: rank 0 raises once there (``pipeline.faults``)."""
    from pipeline import faults
    from pipeline.training import run_training
    from textboost.config import load_config

    cfg = load_config(None, [*base, *extra])
    start = time.perf_counter()
    os.environ[faults.TRAIN_STEP] = str(fault_step)
    try:
        result = run_training(cfg)
    finally:
        del os.environ[faults.TRAIN_STEP]
    return cfg, result, time.perf_counter() - start


def codec_round_trip(checkpoint: str, shards: str, device: str) -> dict:
    """Encode one val-shard image with its words and decode it, on ``device``."""
    import numpy as np
    from PIL import Image

    from pipeline.crops import decode_sample
    from pipeline.loader import shard_list
    from pipeline.validation import _read_samples
    from textboost.codec.image_codec import decode_container, encode_image
    from textboost.model.checkpoint import load_checkpoint
    from textboost.scoring.metrics import psnr

    model, _ = load_checkpoint(checkpoint, map_location=device)
    (sample,) = _read_samples(shard_list(shards, "val"), 1)
    image, _, words = decode_sample(sample)
    pil = Image.fromarray(image)
    start = time.perf_counter()
    data = encode_image(model, pil, words)
    mid = time.perf_counter()
    decoded = decode_container(model, data)
    end = time.perf_counter()
    return {
        "size": f"{pil.width}x{pil.height}",
        "words": len(words),
        "bytes": len(data),
        "bpp": 8 * len(data) / (pil.width * pil.height),
        "psnr": psnr(image, np.asarray(decoded)),
        "encode_s": mid - start,
        "decode_s": end - mid,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.gpu_smoke",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (gloo) without a GPU")
    parser.add_argument("--workdir", default="", help="scratch folder (default: a temp dir)")
    parser.add_argument("--backbone", choices=("elic", "hyperprior"), default=None,
                        help="default: elic on a GPU, a small hyperprior with --cpu")  # fmt: skip
    parser.add_argument("--steps", type=int, default=6, help="steps per training run (>= 4)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 GPU, 2 CPU")
    parser.add_argument("--crop-size", type=int, default=None, help="default 256 GPU, 64 CPU")
    parser.add_argument("--images", type=int, default=16, help="synthetic images per split")
    parser.add_argument("--loader-workers", type=int, default=2, help="loader processes/rank")
    return parser


def _shards_and_loader(args, workdir: str, use_gpu: bool) -> tuple[list[str], object]:
    """Part 1: the shards of both splits and the loader's samples/s; the base overrides."""
    from jobs.bench_train import loader_throughput
    from pipeline.shards import build_shards
    from textboost.config import load_config

    base = base_overrides(args, workdir, use_gpu)
    cfg = load_config(None, base)
    start = time.perf_counter()
    for split in ("train", "val"):
        build_shards(cfg, split)
    say(f"shards: {args.images} images a split in {time.perf_counter() - start:.1f} s")
    per_worker = loader_throughput(cfg, 1, batches=8)
    say(f"loader: {per_worker:.1f} samples/s with 1 loader worker ({args.crop_size}px crops) "
        f"= {per_worker / args.batch_size:.1f} steps/s of batch {args.batch_size} per worker")  # fmt: skip
    return base, cfg


def _training_runs(args, base: list[str], failures: list[str]) -> tuple[dict, dict, dict]:
    """Parts 2-4: stage 1 bf16 with a fault and a resume, stage 1 fp32, stage 2."""
    steps = [f"train.steps_per_epoch={args.steps}", "train.checkpoint_every=2"]
    s1cfg, s1, wall = train(base, *steps, "train.amp=bf16", "train.run_name=smoke-s1-bf16",
                            "train.max_failures=1", fault_step=3)  # fmt: skip
    m = s1["metrics"]
    resumed = (m.get("resumes"), m.get("start_step")) == (1, 2)
    if not resumed:
        failures.append(f"stage 1 did not resume once from step 2: {m}")
    say(f"stage 1 bf16 (killed at step 3, resumed from step {m.get('start_step')}): "
          f"{step_rate(s1cfg, s1):.2f} steps/s, loss {m.get('train.loss', float('nan')):.4f}, "
          f"run wall {wall:.1f} s")  # fmt: skip
    fcfg, fp32, wall = train(base, *steps, "train.amp=none", "train.run_name=smoke-s1-fp32")
    say(f"stage 1 fp32: {step_rate(fcfg, fp32):.2f} steps/s, "
          f"loss {fp32['metrics'].get('train.loss', float('nan')):.4f}, run wall {wall:.1f} s")  # fmt: skip
    s2cfg, s2, wall = train(base, *steps, "train.stage=2", "train.amp=bf16", "train.lr=1e-3",
                            f"train.init_checkpoint={s1['checkpoint']}",
                            "train.run_name=smoke-s2")  # fmt: skip
    say(f"stage 2 bf16 from the stage-1 checkpoint: {step_rate(s2cfg, s2):.2f} steps/s, "
          f"gc_loss {s2['metrics'].get('train.gc_loss', float('nan')):.5f}, run wall {wall:.1f} s")  # fmt: skip
    return s1, fp32, s2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)

    import torch

    use_gpu = not args.cpu
    if use_gpu and not torch.cuda.is_available():
        print(
            f"gpu_smoke: no CUDA GPU visible (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda}); run it on a GPU node, or pass --cpu to run the same "
            "path on the CPU",
            file=sys.stderr,
        )
        return NO_GPU_EXIT
    if args.steps < 4:
        parser.error("--steps must be >= 4 (a checkpoint at 2, a fault at 3, a resume)")
    args.backbone = args.backbone or ("elic" if use_gpu else "hyperprior")
    args.batch_size = args.batch_size or (8 if use_gpu else 2)
    args.crop_size = args.crop_size or (256 if use_gpu else 64)
    workdir = args.workdir or tempfile.mkdtemp(prefix="textboost-gpu-smoke-")
    t0 = time.perf_counter()
    for key, value in versions().items():
        say(f"{key:>10s}: {value}")
    say(f"   workdir: {workdir}")

    base, cfg = _shards_and_loader(args, workdir, use_gpu)
    failures: list[str] = []
    s1, fp32, s2 = _training_runs(args, base, failures)
    device = "cuda" if use_gpu else "cpu"
    rt = codec_round_trip(s2["checkpoint"], cfg.shards.out, device)
    say(f"codec on {device}: {rt['size']} image, {rt['words']} words -> {rt['bytes']} bytes "
          f"({rt['bpp']:.3f} bpp), PSNR {rt['psnr']:.2f} dB, encode {rt['encode_s']:.2f} s, "
          f"decode {rt['decode_s']:.2f} s")  # fmt: skip
    for name, r in (("stage 1 bf16", s1), ("stage 1 fp32", fp32), ("stage 2", s2)):
        loss = r["metrics"].get("train.loss")
        if loss is None or not loss == loss or loss == float("inf"):
            failures.append(f"{name}: loss is {loss}")
    total = time.perf_counter() - t0
    say(f"total: {total:.0f} s" + ("  (over the 5 minute target)" if total > 300 else ""))
    print("\n--- gpu_smoke summary ---\n" + "\n".join(REPORT), flush=True)
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
