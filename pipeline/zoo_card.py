"""The model card of a finished zoo pipeline run (``python -m jobs.zoo_ship``).

Read from ``<workdir>/pipeline/*.json`` of ``textboost pipeline CONFIG`` (stage 1, stage 2,
evaluation): config, data, steps, wall time, and bpp / PSNR / MS-SSIM / DET / E2E F1 of
TextBoost, its backbone, the overlay and the classic codecs on the evaluation set. ``base``
names the pipeline whose stage 1 this one fine-tuned, so the card counts both; a config that
starts from a shipped model (``train.init_checkpoint: zoo:NAME``) counts that model's card
(its steps and wall time, stage 2 included).
"""

from __future__ import annotations

from textboost.config import TextBoostConfig

METRICS = ("bpp", "psnr", "ms_ssim", "det_f1", "e2e_f1")


def _stage(workdir: str, name: str) -> dict:
    from pipeline.stage_state import StageState
    from textboost.errors import TextBoostError

    state = StageState.load(workdir, name).data
    if state.get("status") != "done":
        raise TextBoostError(f"{workdir}: stage {name} is not done; run the pipeline first")
    return state


def _run_seconds(cfg, state: dict) -> float:
    """Wall time of a training stage's MLflow run (first start to last end, restarts
    included), or the stage's own seconds when the run cannot be read."""
    try:
        from mlflow import MlflowClient

        info = MlflowClient(cfg.mlflow.tracking_uri).get_run(state["outputs"]["run_id"]).info
        return (info.end_time - info.start_time) / 1000.0
    except Exception:  # noqa: BLE001 - a card without the exact time is still a card
        return float(state.get("seconds", 0.0))


def _stage1_history(cfg: TextBoostConfig, s1: dict, s2: dict | None, base: str | None):
    """(training lines, stage-1 steps, wall seconds) of the run, with the shipped model it
    started from or the ``base`` pipeline it fine-tuned counted first."""
    from textboost import zoo
    from textboost.config import load_config

    steps1 = cfg.train.epochs * cfg.train.steps_per_epoch
    wall = _run_seconds(cfg, s1) + (_run_seconds(cfg, s2) if s2 else 0.0)
    history = [f"stage 1: {steps1} steps x {cfg.train.num_workers} ranks x {cfg.train.batch_size} "
               f"crops of {cfg.train.crop_size} px, lambda {cfg.train.lmbda}"]  # fmt: skip
    init = cfg.train.init_checkpoint or ""
    if not base and zoo.is_zoo_uri(init):  # fine-tuned from a shipped model: its history first
        parent = zoo.card(init.split(":", 1)[1])
        history = [
            f"{parent['name']}: {line}"
            for line in parent.get("training", [])
            if not line.startswith("stage 2")
        ] + history
        steps1 += parent.get("steps") or 0
        wall += parent.get("wall_time_s") or 0.0
    if base:
        bcfg = load_config(base)
        b1 = _stage(bcfg.workdir, "stage1")
        bsteps = bcfg.train.epochs * bcfg.train.steps_per_epoch
        history.insert(0, f"base stage 1 ({base}): {bsteps} steps, lambda {bcfg.train.lmbda}")
        steps1 += bsteps
        wall += _run_seconds(bcfg, b1)
    return history, steps1, wall


def _description(cfg: TextBoostConfig, refine: int) -> str:
    backbone = f"{cfg.model.backbone} N={cfg.model.N} M={cfg.model.M} backbone"
    if cfg.model.kind == "roi":
        return (f"ROI baseline (paper 5.2.5): {backbone} whose encoder also reads the sent words' "
                f"text mask, distortion inside it weighted x{cfg.train.roi_weight}; no fusion block")  # fmt: skip
    if cfg.model.kind == "taco_style":
        return (f"TACO-style, no CLIP: {backbone} whose encoder cross-attends to the sent words "
                f"({cfg.model.text_encoder} text encoder); the decoder never reads text")  # fmt: skip
    return (
        f"{backbone} + colour fusion block (word colours in the side info, L_gc against the "
        "colour guidance"
        + (f"; global refinement path of {refine} channels" if refine else "")
        + ")"
    )


def build_card(config: str, name: str, base: str | None = None) -> tuple[str, dict]:
    """(final checkpoint URL, card) of a finished pipeline run: its stage-2 checkpoint, or
    the stage-1 one for a pipeline without stage 2 (the ROI and TACO-style baselines)."""
    from pipeline.end_to_end import stage_configs
    from textboost.config import load_config

    cfg = load_config(config)
    s1, ev = (_stage(cfg.workdir, s) for s in ("stage1", "evaluate"))
    s2 = _stage(cfg.workdir, "stage2") if "stage2" in cfg.pipeline.stages else None
    summary = ev["outputs"]["summary"]
    history, steps1, wall = _stage1_history(cfg, s1, s2, base)
    refine = 0
    if s2:
        refine = stage_configs(cfg)["stage2"].model.fusion_refine
        s2steps = s2["outputs"].get("metrics", {}).get("step", "?")
        history.append(f"stage 2: {s2steps} steps (fusion block only)")
    card = {
        "name": name,
        **_figures(cfg, summary),
        "config": config,
        "data": (
            f"{cfg.data.synth.images} synthetic scene-text images ({cfg.data.synth.min_side}-"
            f"{cfg.data.synth.max_side} px) over {cfg.data.synth.backgrounds} in "
            f"{cfg.data.synth.fonts}; evaluation: {summary['images']} images of "
            f"{cfg.eval.dataset.images} (held-out photos and fonts)"
        ),
        "steps": steps1,
        "wall_time_s": round(wall, 1),
        "description": _description(cfg, refine),
        "training": history,
        "trained_on": "2 CPU cores",
    }
    return (s2 or s1)["outputs"]["checkpoint"], card


def reevaluated_card(card: dict, config: str, eval_dir: str) -> dict:
    """``card`` with its figures taken from a later evaluation of the *same* shipped weights
    (``textboost evaluate CONFIG "eval.models=[zoo:NAME]"`` into ``eval_dir``): a new
    operating point (``eval.t_test``, ``eval.select``) measured, the training record kept."""
    import json
    from pathlib import Path

    from textboost.config import load_config
    from textboost.errors import TextBoostError

    cfg = load_config(config)
    try:
        summary = json.loads((Path(eval_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TextBoostError(f"{eval_dir}/summary.json is not readable: {exc}") from None
    label = summary["models"][0]
    identity = (summary.get("model_meta", {}).get(label) or {}).get("model_identity")
    if identity != card.get("model_identity"):
        raise TextBoostError(
            f"{eval_dir} evaluated model {identity}, not {card.get('name')}'s "
            f"{card.get('model_identity')}: evaluate zoo:{card.get('name')} itself"
        )
    return {**card, **_figures(cfg, summary)}


def _figures(cfg: TextBoostConfig, summary: dict) -> dict:
    """The card fields an evaluation gives: the model's own row's metrics, the other rows
    (``evaluation``), how many images and the operating point they were measured at."""
    label = summary["models"][0]
    rows = {m["method"]: m for m in summary["means"] if m.get("model") in (label, "-", None)}
    own = cfg.model.kind  # the model's own row is named by its kind (eval_outputs.MODEL_METHODS)
    return {
        **{k: rows[own].get(k) for k in METRICS},
        "evaluation": {m: {k: rows[m].get(k) for k in METRICS} for m in rows if m != own},
        "evaluated_images": summary["images"],
        # the operating point the figures were measured at (textboost compress --t, --select)
        "t_test": cfg.eval.t_test or cfg.data.filter.t_test,
        "select": cfg.eval.select,
    }
