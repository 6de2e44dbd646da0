"""Planning benchmark: list and plan an ImageNet-sized source in the driver (no images).

    python -m jobs.bench_plan [--classes 1000] [--per-class 1280] [--order mixed|sorted]

Writes one sparse class tar per class (the right size, no data: nothing reads it) with its
sidecar index ``<tar>.idx.json`` (as ``python -m jobs.tar_index`` writes), then times
``pipeline.shards.plan`` (listing through the indexes, the class-mixing order, the cut into
``shards.samples_per_shard`` shards) and reports the driver's peak RSS
(``resource.getrusage``). Target at ImageNet scale (1.28 M references): < 60 s, < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jobs.bench_plan", description=__doc__.split("\n")[0]
    )
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--per-class", type=int, default=1280)
    p.add_argument("--samples-per-shard", type=int, default=1000)
    p.add_argument("--order", choices=("mixed", "sorted"), default="mixed")
    p.add_argument("--dir", help="where to write the generated tars/indexes (default: a temp dir)")
    p.add_argument("--seed", type=int, default=0)
    return p


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def generate(root: Path, classes: int, per_class: int, seed: int) -> int:
    """Sparse class tars + their indexes; member sizes ~ ImageNet's (mean ~110 KB)."""
    from pipeline.sources import TAR_INDEX_FORMAT, TAR_INDEX_SUFFIX

    rng = random.Random(seed)
    total = 0
    for c in range(classes):
        synset = f"n{1440764 + c * 7919:08d}"
        offset, members = 0, []
        for i in range(per_class):
            size = rng.randint(20_000, 200_000)
            members.append([f"{synset}_{i + 1}.JPEG", offset + 512, size])
            offset += 512 + (size + 511) // 512 * 512
        tar_size = offset + 1024
        tar = root / f"{synset}.tar"
        with open(tar, "wb") as f:
            f.truncate(tar_size)  # sparse: the right size, no blocks
        index = {"format": TAR_INDEX_FORMAT, "tar_size": tar_size, "members": members}
        (root / f"{synset}.tar{TAR_INDEX_SUFFIX}").write_text(json.dumps(index))
        total += tar_size
    return total


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipeline.shards import plan
    from textboost.config import load_config

    with tempfile.TemporaryDirectory(prefix="bench_plan_") as tmp:
        root = Path(args.dir or tmp) / "imagenet"
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        total = generate(root, args.classes, args.per_class, args.seed)
        gen_s = time.perf_counter() - t0
        cfg = load_config(
            None,
            [
                "data.train.kind=imagenet",
                f"data.train.images={root}",
                "data.train.ocr=none",
                f"shards.out={Path(tmp) / 'shards'}",
                "shards.executor=local",
                f"shards.samples_per_shard={args.samples_per_shard}",
                f"shards.order={args.order}",
            ],
        )
        rss_before = peak_rss_mb()
        start = time.perf_counter()
        tasks, refs = plan(cfg, "train")
        seconds = time.perf_counter() - start
        rss = peak_rss_mb()
    figures = {
        "references": len(refs),
        "shards": len(tasks),
        "order": args.order,
        "listed_tar_bytes": total,
        "generate_s": round(gen_s, 1),
        "plan_s": round(seconds, 2),
        "peak_rss_mb_before_plan": round(rss_before),
        "peak_rss_mb": round(rss),
        "classes_in_first_shard": len({r.id.split("_")[0] for r in tasks[0].refs}),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures))
    ok = seconds < 60 and rss < 2048
    print(f"target < 60 s and < 2 GB peak RSS: {'met' if ok else 'NOT met'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
