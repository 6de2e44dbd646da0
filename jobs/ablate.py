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
evaluation is logged to MLflow. Prints one table: bpp, PSNR, MS-SSIM, DET F1, E2E F1.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

VARIANTS = {
    "paper": ["model.fusion=paper", "model.fusion_refine=0", "train.gc_target=original"],
    "fusion-only": [
        "model.fusion=colour", "model.fusion_refine=0", "train.gc_target=guidance",
        "train.alpha=0",
    ],
    "text-path": ["model.fusion=colour", "model.fusion_refine=0", "train.gc_target=guidance"],
}  # fmt: skip
NO_WORDS_T = 1e-6  # px^2 of average character area: no word is that small, none is sent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.ablate", description=__doc__.splitlines()[0])
    p.add_argument("config", help="a zoo config whose pipeline has run (configs/zoo/*.yaml)")
    p.add_argument("--limit", type=int, default=0, help="evaluation images (0: the config's)")
    p.add_argument(
        "--refine-only", action="store_true",
        help="also evaluate the full model with no side info (its refinement path alone)",
    )  # fmt: skip
    args = p.parse_args(argv)

    from jobs.pipeline import results_table
    from pipeline.console import quiet, say
    from pipeline.end_to_end import derive, stage_configs
    from pipeline.evaluation import run_evaluation
    from pipeline.stage_state import StageState
    from pipeline.training import run_training
    from textboost.config import load_config
    from textboost.errors import TextBoostError

    try:
        cfg = load_config(
            args.config, [f"workdir={os.path.abspath(load_config(args.config).workdir)}"]
        )
        stage1 = StageState.load(cfg.workdir, "stage1").data
        if stage1.get("status") != "done":
            raise TextBoostError(
                f"{args.config}: run `textboost pipeline {args.config}` first (stage 1 must be "
                "done; the full model is its stage 2)"
            )
        base = stage_configs(cfg)["stage2"]
        models = {}
        log = os.path.join(cfg.workdir, "ablation", "ablation.log")
        full_refines = base.model.fusion_refine > 0
        for name, overrides in VARIANTS.items():
            if name == "text-path" and not full_refines:
                continue  # the full model is the text path
            run_cfg = derive(base, overrides, f"ablation {name}")
            run_cfg.train.init_checkpoint = stage1["outputs"]["checkpoint"]
            run_cfg.train.run_name = f"ablation-{name}"
            run_cfg.train.storage_path = os.path.join(cfg.workdir, "ablation")
            run_cfg.train.shards = StageState.load(cfg.workdir, "shards").data["outputs"]["out"]
            say(f"[ablation] stage 2 variant {name}: {' '.join(overrides)} (log: {log})")
            with quiet(log):
                result = run_training(run_cfg)
            models[name] = result["checkpoint"]
        stage2 = StageState.load(cfg.workdir, "stage2").data
        if stage2.get("status") != "done":
            raise TextBoostError(
                f"{args.config}: the pipeline's stage 2 (the full model) is not done; rerun "
                "this job when it is (the variants above are kept and skipped)"
            )
        models["full"] = stage2["outputs"]["checkpoint"]
        ev = copy.deepcopy(cfg)
        ev.eval.models = list(models.values())
        ev.eval.baselines = ["backbone", "overlay"]
        ev.eval.out = os.path.join(cfg.workdir, "ablation", "eval")
        ev.eval.register = False
        if args.limit:
            ev.eval.limit = args.limit
        say(f"[ablation] evaluating {', '.join(models)} on {ev.eval.dataset.images or 'synthetic'}")
        with quiet(log):
            summary = run_evaluation(ev)
        if args.refine_only:
            ev.eval.models, ev.eval.t_test = [models["full"]], NO_WORDS_T
            ev.eval.baselines = ["backbone"]
            ev.eval.out = os.path.join(cfg.workdir, "ablation", "eval-no-words")
            say("[ablation] the full model with no side info sent (refinement path alone)")
            with quiet(log):
                no_words = run_evaluation(ev)
    except TextBoostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = dict(zip(summary["models"], models))
    say("variants: " + ", ".join(f"{m} = {v}" for m, v in names.items()))
    say(results_table(summary))
    if args.refine_only:
        say("refine only (the full model, no side info sent):")
        say(results_table(no_words))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
