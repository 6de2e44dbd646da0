"""``python -m jobs.bench_reader CONFIG --model URI``: words read by a second OCR engine.

The evaluation's spotter and the encoder's legibility check (``eval.select: legible``) are
both RapidOCR, so a word the encoder blended down until RapidOCR just reads it may be tuned to
that engine. This job reads the same reconstructions with Tesseract (independent models and
code): for each image of CONFIG's evaluation set, the model's container and every baseline of
``eval.baselines`` are made exactly as ``textboost evaluate`` makes them, and each legible
ground-truth word is cut out of each reconstruction and read by Tesseract
(``pipeline.reader_check``). Prints the share of words read per method, the original
included. Needs Tesseract: ``tools/install_tesseract.sh``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m jobs.bench_reader", description=__doc__.splitlines()[0]
    )
    p.add_argument("config", help="evaluation config (its eval.dataset, t_test, select)")
    p.add_argument("--model", required=True, help="checkpoint, MLflow model URI or zoo:NAME")
    p.add_argument("--limit", type=int, default=0, help="first N images (0: eval.limit)")
    p.add_argument("--out", help="write the counts as JSON here")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_intermixed_args(argv)

    from tqdm import tqdm

    from pipeline.eval_data import list_items, prepare_sample
    from pipeline.eval_image import Scoring, evaluate_sample
    from pipeline.reader_check import read_counts, tesseract_command
    from textboost.config import load_config
    from textboost.errors import TextBoostError
    from textboost.model.checkpoint import load_checkpoint
    from textboost.scoring.f1 import SpottingCounts
    from textboost.scoring.spotting import get_spotter

    try:
        command = tesseract_command()
        cfg = load_config(args.config, args.overrides)
        if args.limit:
            cfg.eval.limit = args.limit
        model, _ = load_checkpoint(args.model)
        items, count = list_items(cfg)
        scoring = Scoring(get_spotter(), False, {})
        totals: dict[str, list[int]] = {}
        spotted: dict[str, list] = {}  # method -> [SpottingCounts, psnr sum, bpp sum, images]
        for item in tqdm(items, total=count, desc="read", unit="img"):
            sample = prepare_sample(item, cfg)
            scoring.memo.clear()
            result = evaluate_sample(model, "model", sample, cfg, scoring)
            for row in result.rows:
                agg = spotted.setdefault(row["method"], [SpottingCounts(), 0.0, 0.0, 0])
                counts = {k: row.get(k) or 0 for k in ("n_gt", "n_det", "det_tp", "e2e_tp")}
                agg[0] += SpottingCounts(**counts)
                agg[1] += row.get("psnr") or 0.0
                agg[2] += row.get("bpp") or 0.0
                agg[3] += 1
            for method, (ok, n) in read_counts(sample, result.recon, command).items():
                totals.setdefault(method, [0, 0])
                totals[method][0] += ok
                totals[method][1] += n
    except TextBoostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\nTesseract word recognition, {count} images, select={cfg.eval.select}:")
    for method, (ok, n) in totals.items():
        print(f"  {method:<12} {ok:4d} / {n:4d} = {ok / max(n, 1):.3f}")
    print("the same reconstructions as the evaluation scores them (RapidOCR, ICDAR 2015):")
    for method, (counts, psnr, bpp, n) in spotted.items():
        f1 = counts.scores()
        print(
            f"  {method:<12} bpp {bpp / n:.4f}  PSNR {psnr / n:.2f}  "
            f"DET F1 {f1['det_f1']:.3f}  E2E F1 {f1['e2e_f1']:.3f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"select": cfg.eval.select, "counts": totals}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
