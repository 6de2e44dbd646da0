"""The whole chain, resumable stage by stage (``textboost pipeline`` parses its arguments).

    data -> shards -> stage 1 -> stage 2 -> evaluate -> register

Stage 1 trains the whole model on the rate-distortion loss, stage 2 only the fusion block
with the guidance-consistent loss (paper 4.3, 5.1.4); evaluation measures real bitstreams,
image quality and text-spotting F1 against the backbone and JPEG (paper 5.1.3); the stage-2
model is registered in MLflow. Each stage keeps ``<workdir>/pipeline/<stage>.json`` with the
hash of everything it depends on (its config, the upstream outputs: shard manifest sha256,
checkpoint sha256) and its outputs. A stage whose state is ``done`` with the same hash and
intact outputs is skipped; one that died (``running``) is resumed: committed shards are kept
and training relaunches its Ray Train run by name, continuing from the last checkpoint.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

from pipeline.console import say
from pipeline.stage_state import STATE_DIR, Stage, StageState, run_stage, sha256_url
from textboost.config import (
    BASELINE_MODEL_KEYS,
    PIPELINE_STAGES,
    TextBoostConfig,
    model_key,
    section_from_dict,
    to_dict,
    to_yaml,
    train_key,
)
from textboost.errors import ConfigError

# ---------------------------------------------------------------- per-stage configs


def derive(cfg: TextBoostConfig, overrides: list[str], origin: str) -> TextBoostConfig:
    """``cfg`` with ``key=value`` overrides, strictly checked (unknown keys, types)."""
    from omegaconf import OmegaConf

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"{origin}: overrides must look like key=value, got {bad}")
    merged = OmegaConf.merge(OmegaConf.create(to_dict(cfg)), OmegaConf.from_dotlist(overrides))
    try:
        return section_from_dict(TextBoostConfig, OmegaConf.to_container(merged))
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def stage_configs(cfg: TextBoostConfig) -> dict[str, TextBoostConfig]:
    """The config each stage runs with; every override list is checked before anything runs."""
    p = cfg.pipeline
    stage1 = derive(cfg, ["train.stage=1", *p.stage1], "pipeline.stage1")
    evaluate = derive(cfg, list(p.evaluate), "pipeline.evaluate")
    from textboost.config import FUSION_KEYS

    if cfg.model.kind != "textboost":  # a baseline model: stage 1 is its whole training
        if "stage2" in p.stages:
            raise ConfigError(
                f"model.kind={cfg.model.kind} has no fusion block and no stage 2: leave stage2 "
                "out of pipeline.stages (e.g. [data, shards, stage1, evaluate, register]); "
                "the evaluation takes the stage-1 model"
            )
        if stage1.model != cfg.model:
            raise ConfigError("pipeline.stage1 may not change model.*")
        return {
            "data": cfg, "shards": cfg, "stage1": stage1, "stage2": stage1,
            "evaluate": evaluate, "register": cfg,
        }  # fmt: skip
    stage2 = derive(cfg, ["train.stage=2", *p.stage2], "pipeline.stage2")
    backbone = lambda c: {k: v for k, v in to_dict(c.model).items() if k not in FUSION_KEYS}  # noqa: E731
    if stage1.model != cfg.model or backbone(stage2) != backbone(cfg):
        raise ConfigError(
            "pipeline.stage1 may not change model.*, pipeline.stage2 only the fusion block "
            f"(model.{'/'.join(FUSION_KEYS)}): both stages share the backbone"
        )
    return {
        "data": cfg,
        "shards": cfg,
        "stage1": stage1,
        "stage2": stage2,
        "evaluate": evaluate,
        "register": cfg,
    }


# ---------------------------------------------------------------- stages


def ensure_ray(cfg: TextBoostConfig) -> None:
    """One Ray for all stages: joined, or embedded with its dashboard (it shows the stages'
    tasks and actors while they run)."""
    from pipeline.executor import ensure_ray as start

    url = start(cfg.ray, dashboard=True)
    if url:
        say(f"  Ray dashboard: http://{url}")


def final_stage(cfg: TextBoostConfig) -> str:
    """The training stage whose model is evaluated and registered: stage 2 (the fusion
    block), or stage 1 for a baseline model (``model.kind`` roi / taco_style)."""
    return "stage2" if cfg.model.kind == "textboost" else "stage1"


def _data_key(cfg: TextBoostConfig, done: dict) -> dict:
    return {"data": to_dict(cfg.data), "eval": [to_dict(cfg.eval.dataset), cfg.eval.limit]}


def _run_data(cfg: TextBoostConfig, done: dict, state: StageState) -> dict:
    """List every configured source once: fails early on unreachable data, and the source
    fingerprints feed the shard stage's hash (changed inputs -> rebuilt shards)."""
    from pipeline.eval_data import eval_source
    from pipeline.sources import fingerprint, list_source

    out = {}
    sources = {"train": cfg.data.train, "val": cfg.data.val, "eval": eval_source(cfg)}
    for name, src in sources.items():
        if src.kind == "shards":  # built by the next stage; their manifest keys the evaluation
            out[name] = {"kind": "shards", "shards": src.images}
            say(f"  {name}: the val shards under {src.images}")
            continue
        refs = list_source(src, "train" if name == "train" else "val", cfg.data.synth)
        out[name] = {"kind": src.kind, "samples": len(refs), "fingerprint": fingerprint(refs)}
        say(f"  {name}: {src.kind}, {len(refs)} samples")
    return out


def _shards_key(cfg: TextBoostConfig, done: dict) -> dict:
    shards = to_dict(cfg.shards)
    shards.pop("progress", None)
    sources = {split: done["data"][split] for split in ("train", "val")}
    return {"sources": sources, "data": to_dict(cfg.data), "shards": shards}


def _run_shards(cfg: TextBoostConfig, done: dict, state: StageState) -> dict:
    from pipeline.shards import build_shards, manifest_sha256

    if cfg.shards.executor == "ray":
        ensure_ray(cfg)
    for split in ("train", "val"):
        manifest = build_shards(cfg, split)
    counts = {s: manifest["splits"][s]["count"] for s in ("train", "val")}
    return {
        "out": cfg.shards.out,
        "manifest_sha256": manifest_sha256(cfg.shards.out),
        "counts": counts,
    }


def _shards_intact(outputs: dict) -> bool:
    from pipeline.shards import manifest_sha256

    return manifest_sha256(outputs["out"]) == outputs["manifest_sha256"]


def _train_key(cfg: TextBoostConfig, done: dict) -> dict:
    train = train_key(cfg.train)
    for volatile in ("run_name", "init_checkpoint", "shards", "storage_path"):
        train.pop(volatile)
    # stage 2 starts from stage 1's checkpoint; a stage-1 fine-tune from its init checkpoint
    upstream = done["stage1"]["checkpoint_sha256"] if cfg.train.stage == 2 else None
    if cfg.train.stage == 1 and cfg.train.init_checkpoint:
        upstream = init_identity(cfg.train.init_checkpoint)
    return {
        "seed": cfg.seed,
        # the model keys of the comparison models only when set: earlier runs keep their keys
        "model": model_key(cfg.model, BASELINE_MODEL_KEYS),
        "train": train,
        "manifest_sha256": done["shards"]["manifest_sha256"],
        "init_checkpoint_sha256": upstream,
        "mlflow": [cfg.mlflow.tracking_uri, cfg.mlflow.experiment],
    }


def export_checkpoint(url: str, workdir: str, stage: int) -> str:
    """Copy the stage's final ``model.pt`` to ``<workdir>/checkpoints/stage<N>.pt``: a stable
    path that other configs can start from (``train.init_checkpoint``)."""
    import fsspec

    dest = f"{workdir.rstrip('/')}/checkpoints/stage{stage}.pt"
    fs, path = fsspec.core.url_to_fs(dest)
    fs.makedirs(os.path.dirname(path), exist_ok=True)
    with fsspec.open(url, "rb") as src:
        data = src.read()
    tmp = f"{path}.tmp"
    fs.pipe_file(tmp, data)
    fs.mv(tmp, path)
    return dest


def init_identity(uri: str) -> str:
    """What a stage-1 init checkpoint is, for the stage key: sha256 of a local file, else
    the URI itself (``models:/...``); ``zoo:NAME`` with the zoo file's sha256 (a re-exported
    zoo model is another init checkpoint)."""
    if uri.startswith("zoo:"):
        from textboost import zoo

        return f"{uri}@sha256:{zoo.sha256(uri[len('zoo:') :])}"
    if "://" not in uri and ":" not in uri.split("/")[0] and os.path.isfile(uri):
        return sha256_url(os.path.abspath(uri))
    return uri


def _run_train(cfg: TextBoostConfig, done: dict, state: StageState) -> dict:
    """One Ray Train run. The run name is kept in the state file: a relaunch after a crash
    reuses it, and Ray Train continues from the run's latest checkpoint."""
    from pipeline.training import run_training

    ensure_ray(cfg)
    stage = cfg.train.stage
    run_name = cfg.train.run_name or state.data.get("run_name") or _new_run_name(state, stage)
    state.save(run_name=run_name)
    run_cfg = copy.deepcopy(cfg)
    run_cfg.train.run_name, run_cfg.train.shards = run_name, done["shards"]["out"]
    if stage == 2:
        run_cfg.train.init_checkpoint = done["stage1"]["checkpoint"]
    result = run_training(run_cfg)
    export = export_checkpoint(result["checkpoint"], cfg.workdir, stage)
    say(f"  checkpoint: {export}")
    return {
        "checkpoint": result["checkpoint"],
        "export": export,
        "checkpoint_sha256": sha256_url(result["checkpoint"]),
        "run_id": result["run_id"],
        "run_name": result["run_name"],
        "artifact_uri": result["artifact_uri"],
        "metrics": {k: v for k, v in result["metrics"].items() if isinstance(v, int | float)},
    }


def _new_run_name(state: StageState, stage: int) -> str:
    attempt = int(state.data.get("attempt", 0)) + 1
    state.save(attempt=attempt)
    return f"pipeline-stage{stage}-{state.data['key'][:10]}-{attempt}"


def _train_intact(outputs: dict) -> bool:
    return sha256_url(outputs["checkpoint"]) == outputs["checkpoint_sha256"]


def _eval_key(cfg: TextBoostConfig, done: dict) -> dict:
    # execution settings (eval.workers and its resources) do not change the outputs
    execution = ("models", "register", "workers", "cpus_per_worker", "gpus_per_worker")
    execution += () if cfg.eval.use_gpu else ("use_gpu",)
    key = {
        "eval": {k: v for k, v in to_dict(cfg.eval).items() if k not in execution},
        "data": to_dict(cfg.data),
        "source": done["data"]["eval"],
        "side_info_format": cfg.shards.side_info_format,
        "checkpoint_sha256": done[final_stage(cfg)]["checkpoint_sha256"],
        "mlflow": [cfg.mlflow.tracking_uri, cfg.mlflow.experiment],
    }
    if cfg.eval.dataset.kind == "shards":  # evaluated on the val shards the stage built
        key["eval_shards"] = done["shards"]["manifest_sha256"]
    return key


def _run_eval(cfg: TextBoostConfig, done: dict, state: StageState) -> dict:
    """Real bitstreams of the stage-2 model (a baseline model: stage 1) against the backbone
    and JPEG (paper 5.1.3), logged as an MLflow run; registration is the next stage."""
    from pipeline.evaluation import run_evaluation

    run_cfg = copy.deepcopy(cfg)
    run_cfg.eval.models = [done[final_stage(cfg)]["checkpoint"]]
    run_cfg.eval.track, run_cfg.eval.register = True, False
    if cfg.eval.workers > 0:
        ensure_ray(cfg)
    summary = run_evaluation(run_cfg)
    path = f"{cfg.eval.out.rstrip('/')}/summary.json"
    return {"summary": summary, "run_id": summary["run_id"], "summary_sha256": sha256_url(path)}


def _eval_intact(outputs: dict) -> bool:
    path = f"{outputs['summary']['out'].rstrip('/')}/summary.json"
    return sha256_url(path) == outputs["summary_sha256"]


def _register_key(cfg: TextBoostConfig, done: dict) -> dict:
    return {"mlflow": to_dict(cfg.mlflow), "evaluation": done["evaluate"]["summary_sha256"]}


def _run_register(cfg: TextBoostConfig, done: dict, state: StageState) -> dict:
    """Log the stage-2 checkpoint as a pyfunc codec in the evaluation run, register it
    (alias ``candidate``; ``champion`` when it wins) and tag it with its training runs."""
    import mlflow

    from pipeline import registry, tracking

    tracking.setup_mlflow(cfg.mlflow)
    with mlflow.start_run(run_id=done["evaluate"]["run_id"]):
        (entry,) = registry.register_evaluated(cfg, done["evaluate"]["summary"])
    tags = {
        f"{tracking.TAG}train_run_id": done[final_stage(cfg)]["run_id"],
        f"{tracking.TAG}stage1_run_id": done["stage1"]["run_id"],
        f"{tracking.TAG}shards": done["shards"]["out"],
    }
    registry.tag_version(cfg.mlflow, entry["version"], tags)
    name = cfg.mlflow.registered_model
    uri = f"models:/{name}/{entry['version']}"
    return {**entry, "registered_model": name, "uri": uri, "tracking_uri": cfg.mlflow.tracking_uri}


def _register_intact(outputs: dict) -> bool:
    """The registered version still exists (someone may have deleted it)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(outputs["tracking_uri"], registry_uri=outputs["tracking_uri"])
    try:
        client.get_model_version(outputs["registered_model"], outputs["version"])
    except MlflowException:
        return False
    return True


STAGES: dict[str, Stage] = {
    "data": Stage("data", _data_key, _run_data),
    "shards": Stage("shards", _shards_key, _run_shards, _shards_intact),
    "stage1": Stage("stage1", _train_key, _run_train, _train_intact),
    "stage2": Stage("stage2", _train_key, _run_train, _train_intact),
    "evaluate": Stage("evaluate", _eval_key, _run_eval, _eval_intact),
    "register": Stage("register", _register_key, _run_register, _register_intact),
}


def run_pipeline(cfg: TextBoostConfig, force: tuple[str, ...] = ()) -> dict[str, dict]:
    """Run the configured stages in order; returns every stage's state by name."""
    configs = stage_configs(cfg)
    workdir = cfg.workdir
    Path(workdir, STATE_DIR).mkdir(parents=True, exist_ok=True)
    Path(workdir, STATE_DIR, "config.yaml").write_text(to_yaml(cfg))
    from pipeline.tracking import ensure_experiment

    ensure_experiment(cfg.mlflow.tracking_uri, cfg.mlflow.experiment)
    done: dict[str, dict] = {}
    states: dict[str, dict] = {}
    todo = [s for s in PIPELINE_STAGES if s in cfg.pipeline.stages]
    for name in PIPELINE_STAGES:
        if name not in todo:  # not run now: earlier outputs (if any) feed later stages
            state = StageState.load(workdir, name).data
            if state.get("status") == "done":
                done[name] = state["outputs"]
            continue
        say(f"[{todo.index(name) + 1}/{len(todo)}] {name}")
        start = time.perf_counter()
        state = run_stage(STAGES[name], configs[name], done, workdir, name in force)
        state["wall_s"] = round(time.perf_counter() - start, 1)
        done[name], states[name] = state["outputs"], state
        verb = "skipped (up to date)" if state.get("skipped") else "done"
        say(f"[{todo.index(name) + 1}/{len(todo)}] {name}: {verb} in {state['wall_s']} s")
    return states
