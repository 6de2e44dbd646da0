"""``python -m jobs.ablate CONFIG``: the ablation table of paper 5.3 for one zoo config.

Runs after ``textboost pipeline CONFIG`` (it needs the stage-1 checkpoint the pipeline
exported to ``<workdir>/checkpoints/stage1.pt`` and the stage-2 one). From the same stage-1
backbone it trains the stage-2 variants below with the config's own stage-2 settings
(Ray Train, same shards and steps), then evaluates all of them on the config's evaluation set
with real bitstreams, next to the backbone and the overlay:

* ``paper``: the paper's block and loss (Fig. 4, Eq. 8: white-on-black guidance, L_gc
  against the original), no word colours;
* ``fusion-only``: the colour block with alpha = 0 (only the MSE to the original);
* ``text-path``: the colour block and L_gc against the colour guidance, without the global
  refinement path (``model.fusion_refine=0``);
* ``full``: the pipeline's stage-2 model (with the refinement path when its config has one);
* ``refine only`` (with ``--refine-only``): the full model evaluated with no side info sent
  (``eval.t_test`` ~ 0), i.e. what the refinement path alone does to the backbone's output.

Each variant is its own Ray Train run in ``<workdir>/ablation`` (resumable by name); the
evaluation is logged to MLflow. Prints one table: bpp, PSNR, MS-SSIM, DET F1, E2E F1. The
ablation itself is ``pipeline.ablation``; this module parses the arguments and prints.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.ablate", description=__doc__.splitlines()[0])
    p.add_argument("config", help="a zoo config whose pipeline has run (configs/zoo/*.yaml)")
    p.add_argument("--limit", type=int, default=0, help="evaluation images (0: the config's)")
    p.add_argument(
        "--refine-only", action="store_true",
        help="also evaluate the full model with no side info (its refinement path alone)",
    )  # fmt: skip
    args = p.parse_args(argv)

    from pipeline.ablation import run_ablation
    from pipeline.console import say
    from pipeline.run_summary import results_table
    from textboost.errors import TextBoostError

    try:
        out = run_ablation(args.config, args.limit, args.refine_only)
    except TextBoostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = dict(zip(out["summary"]["models"], out["models"]))
    say("variants: " + ", ".join(f"{m} = {v}" for m, v in names.items()))
    say(results_table(out["summary"]))
    if args.refine_only:
        say("refine only (the full model, no side info sent):")
        say(results_table(out["no_words"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
