"""``python -m jobs.bench_train [CONFIG] [key=value ...] [--loader]``: training images/s.

``--loader``: the training loader alone (``pipeline.loader``, no model) on 256² crops from
ImageNet-like shards (``LOADER_DEFAULTS``: synthetic images of ImageNet's typical 333-500 px
sides, batch 32): samples/s with 1 and 2 loader workers, hence samples/s per worker, against
the samples/s the training step consumes (plain torch step rate × batch) and the loader
workers per rank that feed it. Without ``--loader``:

Measures the same model, loader and optimisation step (``pipeline.train_step.Stepper``) three
ways on CPU: a plain single-process torch loop, and Ray Train DDP with 1 and 2 workers.
Throughput is the harmonic mean of per-step images/s after ``--warmup`` steps (each step's
time includes waiting for its batch), so it is total images / total time in every case. The
Ray overhead is ``1 - ray(1 worker) / plain(1 thread)``, as Ray gives a 1-CPU worker one
thread. Variants run interleaved for ``--repeats`` rounds; the best round of each is compared. Without CONFIG a small hyperprior setup on synthetic shards is used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

DEFAULTS = [
    "workdir=runs/bench_train", "model.backbone=hyperprior", "model.N=32", "model.M=32",
    "train.crop_size=128", "train.batch_size=4", "train.loader_workers=1",
    "train.lr_schedule=constant", "data.synth.images=32", "data.synth.min_side=160",
    "data.synth.max_side=320", "shards.samples_per_shard=8", "shards.executor=local",
    "shards.progress=false", "ray.num_cpus=2", "mlflow.experiment=bench_train",
]  # fmt: skip


LOADER_DEFAULTS = [
    "workdir=runs/bench_loader", "model.backbone=hyperprior", "model.N=32", "model.M=32",
    "train.crop_size=256", "train.batch_size=32", "train.lr_schedule=constant",
    "data.synth.images=64", "data.synth.min_side=333", "data.synth.max_side=500",
    "shards.samples_per_shard=16", "shards.executor=local", "shards.progress=false",
    "ray.num_cpus=2", "mlflow.experiment=bench_train",
]  # fmt: skip


def loader_throughput(cfg, workers: int, batches: int, warmup: int = 2) -> float:
    """Samples/s that the training loader delivers with ``workers`` loader processes (0: in
    this process), crops of ``train.crop_size``, after ``warmup`` batches (no model)."""
    from pipeline.loader import LoaderSpec, make_loader, shard_list

    t = cfg.train
    spec = LoaderSpec(shard_list(t.shards), t.batch_size, t.crop_size, cfg.seed,
                      num_workers=workers, with_mask=t.stage == 2)  # fmt: skip
    it = iter(make_loader(spec, batches + warmup))
    for _ in range(warmup):
        next(it)
    start, samples = time.perf_counter(), 0
    for batch in it:
        samples += len(batch["keys"])
    return samples / (time.perf_counter() - start)


def loader_report(cfg, steps: int, warmup: int, workers: list[int]) -> None:
    """Loader samples/s per worker vs the samples/s one training rank consumes."""
    import math

    t = cfg.train
    rates = {w: loader_throughput(cfg, w, steps, warmup) for w in workers}
    for w, r in rates.items():
        per = f", {r / w:.1f} per worker" if w else " (in the training process)"
        print(f"loader, {w} worker(s): {r:.1f} samples/s{per}")
    per_worker = max(r / w for w, r in rates.items() if w) if any(workers) else rates[0]
    step = statistics.harmonic_mean(plain_loop(cfg, steps, warmup, os.cpu_count() or 1))
    need = step  # images/s = samples/s the step consumes on this machine
    print(f"training step (plain torch, {t.batch_size} x {t.crop_size}^2, "
          f"{cfg.model.backbone}): {need:.1f} samples/s = {need / t.batch_size:.2f} steps/s")  # fmt: skip
    print(f"loader workers per rank to feed it: {math.ceil(need / per_worker)} "
          f"(at {per_worker:.1f} samples/s per worker); a GPU step rate R steps/s needs "
          f"ceil(R x {t.batch_size} / {per_worker:.1f}) workers")  # fmt: skip


def ensure_shards(cfg) -> None:
    """Build the synthetic training shards unless ``train.shards`` already holds some."""
    from pipeline.shards import build_shards, read_manifest
    from textboost.errors import ShardError

    try:
        read_manifest(cfg.train.shards)
    except ShardError:
        build_shards(cfg, "train")


def plain_loop(cfg, steps: int, warmup: int, threads: int) -> list[float]:
    """Per-step images/s of a single-process loop (no Ray, no DDP)."""
    import torch

    from pipeline.loader import LoaderSpec, make_loader, shard_list
    from pipeline.train_step import Stepper
    from textboost.model import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    t = cfg.train
    stepper = Stepper(build_model(cfg.model), t, torch.device("cpu"), steps + warmup)
    spec = LoaderSpec(shard_list(t.shards), t.batch_size, t.crop_size, cfg.seed,
                      num_workers=t.loader_workers, with_mask=t.stage == 2,
                      shuffle_buffer=t.shuffle_buffer)  # fmt: skip
    rates, tick = [], time.perf_counter()
    for batch in make_loader(spec, steps + warmup):
        stepper.step(batch)
        now = time.perf_counter()
        rates.append(t.batch_size / (now - tick))
        tick = now
    return rates[warmup:]


def ray_run(cfg, steps: int, warmup: int, workers: int) -> tuple[list[float], float]:
    """Per-step images/s (rank 0, all ranks' images) of a Ray Train run; and its wall time."""
    import dataclasses

    from mlflow.tracking import MlflowClient

    from pipeline.training import run_training

    train = dataclasses.replace(
        cfg.train, num_workers=workers, epochs=1, steps_per_epoch=steps + warmup,
        checkpoint_every=steps + warmup, run_name=f"bench-{workers}w-{time.time_ns()}",
        log_every=1,  # one train.images_per_s row per step (the default averages 50)
    )  # fmt: skip
    start = time.perf_counter()
    result = run_training(dataclasses.replace(cfg, train=train))
    wall = time.perf_counter() - start
    history = MlflowClient(cfg.mlflow.tracking_uri).get_metric_history(
        result["run_id"], "train.images_per_s"
    )
    return [h.value for h in sorted(history, key=lambda h: h.step)][warmup:], wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.bench_train", description=__doc__)
    parser.add_argument("config", nargs="?", help="YAML config (default: built-in small setup)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds (best is kept)")
    parser.add_argument("--loader", action="store_true",
                        help="loader samples/s per worker vs the step rate (no Ray)")  # fmt: skip
    parser.add_argument("--loader-workers", default="1,2", help="--loader: worker counts")
    args = parser.parse_args(argv)
    if args.config and "=" in args.config:  # no CONFIG, only overrides
        args.overrides, args.config = [args.config, *args.overrides], None

    import ray

    from textboost.config import load_config

    defaults = LOADER_DEFAULTS if args.loader else DEFAULTS
    cfg = load_config(args.config, [*([] if args.config else defaults), *args.overrides])
    ensure_shards(cfg)
    if args.loader:
        workers = [int(w) for w in args.loader_workers.split(",") if w.strip()]
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        loader_report(cfg, args.steps, args.warmup, workers)
        return 0
    t = cfg.train
    print(f"model {cfg.model.backbone} N={cfg.model.N} M={cfg.model.M}, crop {t.crop_size}, "
          f"batch {t.batch_size}/worker, loader_workers {t.loader_workers}, "
          f"{args.steps} timed steps after {args.warmup}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    ray.init(num_cpus=cfg.ray.num_cpus or None, include_dashboard=False, log_to_driver=False)
    names = ["plain torch, 1 thread", "plain torch, 2 threads", "Ray Train, 1 worker",
             "Ray Train DDP, 2 workers"]  # fmt: skip
    runs: dict[str, list[list[float]]] = {n: [] for n in names}  # per-step images/s per round
    walls: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):  # interleaved, so a busy machine hurts every variant alike
        for name, threads in zip(names[:2], (1, 2)):
            runs[name].append(plain_loop(cfg, args.steps, args.warmup, threads))
        for name, workers in zip(names[2:], (1, 2)):
            per_step, wall = ray_run(cfg, args.steps, args.warmup, workers)
            runs[name].append(per_step)
            walls[name].append(wall)
        print(f"round {r + 1} images/s: "
              + ", ".join(f"{n} {statistics.harmonic_mean(runs[n][-1]):.2f}" for n in names))  # fmt: skip
    ray.shutdown()
    # Throughput of a round = harmonic mean of its per-step rates (total images / total time);
    # a round's typical step = its median step, which ignores bursts of load from other jobs.
    # Best round of each, as timeit does: other load only ever slows a variant down.
    thr = {n: max(statistics.harmonic_mean(r) for r in v) for n, v in runs.items()}
    typ = {n: max(statistics.median(r) for r in v) for n, v in runs.items()}
    print(f"{'':26s} {'throughput':>12s} {'median step':>12s}  (images/s, best of {args.repeats})")
    for n in names:
        wall = f"  run wall time incl. start-up {min(walls[n]):.1f} s" if walls[n] else ""
        print(f"{n:26s} {thr[n]:12.2f} {typ[n]:12.2f}{wall}")
    for label, d in (("throughput", thr), ("median step", typ)):
        print(f"Ray overhead ({label}), 1 worker vs plain 1 thread: "
              f"{(1 - d[names[2]] / d[names[0]]) * 100:+.1f} % (target <= 5 %); "
              f"2-worker DDP vs 1 worker: {d[names[3]] / d[names[2]]:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
