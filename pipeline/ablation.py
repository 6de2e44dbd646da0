"""The ablation of paper 5.3 for one zoo config (``python -m jobs.ablate``).

From the pipeline's stage-1 backbone, each variant of ``VARIANTS`` is trained with the
config's own stage-2 settings (a Ray Train run named ``ablation-<variant>`` in
``<workdir>/ablation``: resumable by name), then all of them and the pipeline's stage-2 model
(``full``) are evaluated on the config's evaluation set next to the backbone and the overlay.
``refine_only``: the full model is also evaluated with no side info sent, i.e. what its
refinement path alone does to the backbone's output.
"""

from __future__ import annotations

import copy
import os

from pipeline.console import quiet, say
from pipeline.end_to_end import derive, stage_configs
from pipeline.stage_state import StageState
from textboost.config import TextBoostConfig, load_config
from textboost.errors import TextBoostError

VARIANTS = {
    "paper": ["model.fusion=paper", "model.fusion_refine=0", "train.gc_target=original"],
    "fusion-only": [
        "model.fusion=colour", "model.fusion_refine=0", "train.gc_target=guidance",
        "train.alpha=0",
    ],
    "text-path": ["model.fusion=colour", "model.fusion_refine=0", "train.gc_target=guidance"],
}  # fmt: skip
NO_WORDS_T = 1e-6  # px^2 of average character area: no word is that small, none is sent


def run_ablation(config: str, limit: int = 0, refine_only: bool = False) -> dict:
    """Train the variants and evaluate them with the full model; returns ``summary`` (the
    evaluation), ``models`` (variant -> checkpoint) and, with ``refine_only``, ``no_words``
    (the full model's evaluation with no side info sent). Raises ``TextBoostError`` when the
    pipeline of ``config`` has not run far enough."""
    cfg = load_config(config, [f"workdir={os.path.abspath(load_config(config).workdir)}"])
    stage1 = StageState.load(cfg.workdir, "stage1").data
    if stage1.get("status") != "done":
        raise TextBoostError(
            f"{config}: run `textboost pipeline {config}` first (stage 1 must be "
            "done; the full model is its stage 2)"
        )
    log = os.path.join(cfg.workdir, "ablation", "ablation.log")
    models = _train_variants(cfg, stage1["outputs"]["checkpoint"], log)
    stage2 = StageState.load(cfg.workdir, "stage2").data
    if stage2.get("status") != "done":
        raise TextBoostError(
            f"{config}: the pipeline's stage 2 (the full model) is not done; rerun "
            "this job when it is (the variants above are kept and skipped)"
        )
    models["full"] = stage2["outputs"]["checkpoint"]
    return {"models": models, **_evaluate(cfg, models, log, limit, refine_only)}


def _train_variants(cfg: TextBoostConfig, stage1_checkpoint: str, log: str) -> dict[str, str]:
    """Variant name -> stage-2 checkpoint of its Ray Train run (``text-path`` only when the
    full model has a refinement path: without one, the full model is the text path)."""
    from pipeline.training import run_training

    base = stage_configs(cfg)["stage2"]
    models = {}
    full_refines = base.model.fusion_refine > 0
    for name, overrides in VARIANTS.items():
        if name == "text-path" and not full_refines:
            continue  # the full model is the text path
        run_cfg = derive(base, overrides, f"ablation {name}")
        run_cfg.train.init_checkpoint = stage1_checkpoint
        run_cfg.train.run_name = f"ablation-{name}"
        run_cfg.train.storage_path = os.path.join(cfg.workdir, "ablation")
        run_cfg.train.shards = StageState.load(cfg.workdir, "shards").data["outputs"]["out"]
        say(f"[ablation] stage 2 variant {name}: {' '.join(overrides)} (log: {log})")
        with quiet(log):
            result = run_training(run_cfg)
        models[name] = result["checkpoint"]
    return models


def _evaluate(cfg: TextBoostConfig, models: dict, log: str, limit: int, refine_only: bool):
    """``{"summary": ...}`` of all models, with the backbone and the overlay; with
    ``refine_only`` also ``no_words``: the full model with no side info sent."""
    from pipeline.evaluation import run_evaluation

    ev = copy.deepcopy(cfg)
    ev.eval.models = list(models.values())
    ev.eval.baselines = ["backbone", "overlay"]
    ev.eval.out = os.path.join(cfg.workdir, "ablation", "eval")
    ev.eval.register = False
    if limit:
        ev.eval.limit = limit
    say(f"[ablation] evaluating {', '.join(models)} on {ev.eval.dataset.images or 'synthetic'}")
    with quiet(log):
        out = {"summary": run_evaluation(ev)}
    if refine_only:
        ev.eval.models, ev.eval.t_test = [models["full"]], NO_WORDS_T
        ev.eval.baselines = ["backbone"]
        ev.eval.out = os.path.join(cfg.workdir, "ablation", "eval-no-words")
        say("[ablation] the full model with no side info sent (refinement path alone)")
        with quiet(log):
            out["no_words"] = run_evaluation(ev)
    return out
