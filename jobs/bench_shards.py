"""Shard-builder benchmark: samples/s per core, plain loop vs Ray (1 and 2 workers), bytes.

    python -m jobs.bench_shards [--images 320] [--max-side 1024] [--samples-per-shard 32]

Synthetic TextOCR-format images are generated to disk first (``--data``, reused when
present), so the figures measure the shard builder (read, decode check, filter, side info,
guidance map, PNG, tar, commit), not the generator. The same per-shard function runs in
a plain loop in this process, then as Ray tasks with 1 and with 2 in flight; every run
writes the same bytes (checked). Targets: >= 50 samples/s per core, Ray overhead <= 10 %
against the plain loop, 1 -> 2 workers >= 1.7x. Wall-clock figures need otherwise idle
cores; the CPU figures (task CPU time, and CPU of this process plus every Ray process it
started) hold up on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def _data(root: Path, images: int, max_side: int, seed: int) -> Path:
    from textboost.data.synth_sets import generate

    meta = root / "bench.json"
    want = {"images": images, "max_side": max_side, "seed": seed}
    if not (meta.is_file() and json.loads(meta.read_text()) == want):
        print(f"generating {images} synthetic images ({max_side} px) in {root} ...")
        generate(root, images, seed, max_side=max_side, min_side=max_side * 3 // 4, workers=2)
        meta.write_text(json.dumps(want))
    return root


def _stages(cfg, split: str = "train") -> dict[str, float]:
    """Mean CPU milliseconds per sample of each step of ``process_sample`` (plain loop)."""
    from pipeline import heap, image_io, png, sample_words
    from pipeline.shards import plan
    from textboost.text.filtering import filter_words
    from textboost.text.guidance import render_guidance
    from textboost.text.side_info import decode_side_info, encode_side_info

    heap.steady_heap()  # as run_shard does
    tasks, refs = plan(cfg, split)
    spec, clock = tasks[0].spec, {}

    def tick(name: str, t0: float) -> float:
        now = time.process_time()
        clock[name] = clock.get(name, 0.0) + now - t0
        return now

    for ref in refs:
        t = time.process_time()
        data = image_io.read_range(ref.image)
        t = tick("read", t)
        _, (w, h) = image_io.decode_image(data, full=False)
        t = tick("decode check", t)
        words = sample_words.textocr_words(ref.words_json)
        kept, _ = filter_words(words, spec.threshold)
        t = tick("words + filter", t)
        side = encode_side_info(kept, (w, h), fmt=spec.side_info_format)
        decoded = decode_side_info(side)
        t = tick("side info", t)
        guide = render_guidance(decoded, h, w)
        t = tick("guidance render", t)
        png.encode_png(guide)
        tick("guide.png encode", t)
    return {k: round(1000 * v / len(refs), 2) for k, v in clock.items()}


def _cpu_seconds() -> float:
    """CPU time of this process and all its descendants (embedded Ray: GCS, raylet, workers)."""
    import importlib

    importlib.import_module("ray")  # puts Ray's vendored psutil on sys.path
    psutil = importlib.import_module("psutil")
    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _run(cfg, out: Path, **shards) -> tuple[dict, dict]:
    """Build the train split into a fresh folder; (summary with timings, stats by shard)."""
    from pipeline.shards import build_split

    for key, value in {"out": str(out), **shards}.items():
        setattr(cfg.shards, key, value)
    cpu = _cpu_seconds()
    stats, summary = build_split(cfg, "train")
    summary["all_cpu_seconds"] = _cpu_seconds() - cpu
    return summary, {s["name"]: s for s in stats}


def _report(args, settings: dict, best: dict, digests: dict, stats: dict, stages: dict) -> dict:
    """The figures of the best run of each setting, the overheads and the bytes."""
    n = args.images
    results = {
        name: {
            "samples_per_s": n / best[name]["seconds"],
            "per_core": n / best[name]["seconds"] / shards["max_in_flight"],
            "per_cpu_second": n / best[name]["task_seconds"]["cpu"],
            "cpu_ms_per_sample_all_processes": 1000 * best[name]["all_cpu_seconds"] / n,
        }
        for name, shards in settings.items()
    }
    plain, one, two = (results[k]["samples_per_s"] for k in settings)
    cpu_plain, cpu_one = (results[k]["cpu_ms_per_sample_all_processes"] for k in list(settings)[:2])
    total = sum(s["bytes"] for s in stats.values())
    fields: dict[str, int] = {}
    for s in stats.values():
        for k, v in s["field_bytes"].items():
            fields[k] = fields.get(k, 0) + v
    report = {
        "images": n,
        "max_side": args.max_side,
        "cpu_ms_per_sample_by_stage": stages,
        "runs": {k: {m: round(v, 1) for m, v in r.items()} for k, r in results.items()},
        "ray_overhead_pct": round(100 * (1 - one / plain), 1),
        "ray_cpu_overhead_pct": round(100 * (cpu_one / cpu_plain - 1), 1),
        "scaling_1_to_2": round(two / one, 2),
        "identical_bytes": len({json.dumps(d) for d in digests.values()}) == 1,
        "shard_bytes_per_sample": round(total / n),
        "field_share_pct": {k: round(100 * v / total, 1) for k, v in sorted(fields.items())},
    }
    return report


def _print_report(report: dict) -> None:
    for name, r in report["runs"].items():
        print(
            f"{name:14s} {r['samples_per_s']:7.1f} samples/s  {r['per_core']:6.1f} per core "
            f"(wall)  {r['per_cpu_second']:6.1f} per task CPU-second  "
            f"{r['cpu_ms_per_sample_all_processes']:5.2f} CPU ms/sample (all processes)"
        )
    print(
        f"ray overhead {report['ray_overhead_pct']} % wall, "
        f"{report['ray_cpu_overhead_pct']} % CPU, scaling 1->2 workers "
        f"{report['scaling_1_to_2']}x, {report['shard_bytes_per_sample']} shard bytes/sample, "
        f"guide.png {report['field_share_pct'].get('guide.png', 0)} % of shard bytes"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.bench_shards")
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--samples-per-shard", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="best of N per setting")
    parser.add_argument("--data", default="runs/bench_shards/data")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from pipeline.executor import ensure_ray
    from textboost.config import load_config

    data = _data(Path(args.data), args.images, args.max_side, args.seed)
    cfg = load_config(
        None,
        [
            "data.train.kind=textocr",
            f"data.train.images={data / 'images'}",
            f"data.train.annotations={data / 'textocr.json'}",
            f"shards.samples_per_shard={args.samples_per_shard}",
            "shards.progress=false",
            "ray.num_cpus=2",
        ],
    )
    stages = _stages(cfg)
    ensure_ray(cfg.ray)
    settings = {
        "plain loop": {"executor": "local", "max_in_flight": 1},
        "ray 1 worker": {"executor": "ray", "max_in_flight": 1},
        "ray 2 workers": {"executor": "ray", "max_in_flight": 2},
    }
    best: dict[str, dict] = {}
    digests: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        _run(cfg, Path(tmp, "warmup"), executor="ray", max_in_flight=2)  # start the workers
        for r in range(args.repeats):  # interleaved, so load changes hit every setting alike
            for name, shards in settings.items():
                summary, stats = _run(cfg, Path(tmp, f"{name}-{r}".replace(" ", "_")), **shards)
                if name not in best or summary["seconds"] < best[name]["seconds"]:
                    best[name] = summary
                digests[name] = sorted((k, s["sha256"]) for k, s in stats.items())
    report = _report(args, settings, best, digests, stats, stages)
    _print_report(report)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
