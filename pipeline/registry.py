"""The model registry: version tags and the alias policy (trained, candidate, champion).

Aliases, not stages: ``trained`` marks the newest version registered by a training run
(``train.register``; always set, whatever its rate); ``candidate`` marks the newest evaluated
version (always set by an evaluation that registers); ``champion`` moves only when the
candidate beats the champion on ``mlflow.champion_metric`` within ``mlflow.bpp_budget`` on the
same evaluation set (``maybe_promote``), so it may never exist for a rate point above the
budget. Pipelines chain on ``trained``/``candidate``; consumers use ``champion``.
"""

from __future__ import annotations

import math

from pipeline.pyfunc import log_codec_model
from pipeline.tracking import TAG, client
from textboost.canonical import sha256_json
from textboost.config import MlflowConfig
from textboost.errors import ConfigError

CANDIDATE, CHAMPION = "candidate", "champion"
TRAINED = "trained"  # set by a training run with train.register: its final checkpoint


def tag_version(mlflow_cfg: MlflowConfig, version: str, tags: dict) -> None:
    c = client(mlflow_cfg)
    for k, v in tags.items():
        c.set_model_version_tag(mlflow_cfg.registered_model, str(version), k, str(v))


def version_by_alias(mlflow_cfg: MlflowConfig, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client(mlflow_cfg).get_model_version_by_alias(mlflow_cfg.registered_model, alias)
    except MlflowException:
        return None


def _score(tags: dict, metric: str) -> float | None:
    raw = tags.get(f"{TAG}metric.{metric}")
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def champion_decision(
    candidate_tags: dict, champion_tags: dict | None, cfg: MlflowConfig
) -> tuple[bool, str]:
    """(move champion?, why): the candidate must fit the bpp budget and beat the champion's
    ``champion_metric`` measured on the same evaluation set."""
    metric = cfg.champion_metric
    cand, bpp = _score(candidate_tags, metric), _score(candidate_tags, "bpp")
    if cand is None or bpp is None:
        return False, f"candidate has no {metric} / bpp recorded"
    if bpp > cfg.bpp_budget:
        return False, f"candidate bpp {bpp:.5f} exceeds mlflow.bpp_budget {cfg.bpp_budget}"
    if champion_tags is None:
        return True, "no champion yet"
    key = f"{TAG}eval_fingerprint"
    if champion_tags.get(key) != candidate_tags.get(key):
        return False, "champion was evaluated on another set: not comparable (promote by hand)"
    champ = _score(champion_tags, metric)
    if champ is None or cand > champ:
        return True, f"{metric} {cand:.4f} > champion's {champ if champ is not None else 'n/a'}"
    return False, f"{metric} {cand:.4f} does not beat the champion's {champ:.4f}"


def maybe_promote(mlflow_cfg: MlflowConfig, version: str) -> dict:
    """Give ``version`` the candidate alias; move champion when it wins (see above)."""
    c = client(mlflow_cfg)
    name = mlflow_cfg.registered_model
    c.set_registered_model_alias(name, CANDIDATE, str(version))
    cand = c.get_model_version(name, str(version))
    champ = version_by_alias(mlflow_cfg, CHAMPION)
    if champ is not None and str(champ.version) == str(version):
        return {"version": str(version), "champion": True, "reason": "already champion"}
    move, why = champion_decision(cand.tags, champ.tags if champ else None, mlflow_cfg)
    if move:
        c.set_registered_model_alias(name, CHAMPION, str(version))
    return {"version": str(version), "champion": move, "reason": why}


def promote(mlflow_cfg: MlflowConfig, version: str, alias: str = CHAMPION) -> None:
    """Set ``alias`` on ``version`` by hand (the registry CLI)."""
    from mlflow.exceptions import MlflowException

    c = client(mlflow_cfg)
    try:
        c.get_model_version(mlflow_cfg.registered_model, str(version))
    except MlflowException:
        raise ConfigError(
            f"{mlflow_cfg.registered_model} has no version {version!r} in "
            f"{mlflow_cfg.tracking_uri}; see `textboost registry list`"
        ) from None
    c.set_registered_model_alias(mlflow_cfg.registered_model, alias, str(version))


def list_versions(mlflow_cfg: MlflowConfig) -> list[dict]:
    """Registered versions, newest first: version, aliases, run id, key metrics."""
    from mlflow.exceptions import MlflowException

    c = client(mlflow_cfg)
    name = mlflow_cfg.registered_model
    try:
        aliases = dict(c.get_registered_model(name).aliases or {})
    except MlflowException:
        return []  # nothing registered under this name yet
    by_version: dict[str, list[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(str(v), []).append(alias)
    versions = c.search_model_versions(f"name = '{name}'")
    out = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        metrics = {
            k[len(f"{TAG}metric.") :]: val
            for k, val in v.tags.items()
            if k.startswith(f"{TAG}metric.")
        }
        out.append(
            {
                "version": str(v.version),
                "aliases": sorted(by_version.get(str(v.version), [])),
                "run_id": v.run_id,
                "created": v.creation_timestamp,
                "metrics": metrics,
            }
        )
    return out


def version_tags(summary: dict, label: str, run_id: str) -> dict:
    """Registry tags of one evaluated model: its TextBoost metrics and its lineage."""
    meta = summary["model_meta"][label]
    own = meta.get("method", "textboost")  # the model's own row (textboost, roi, taco_style)
    point = next(m for m in summary["means"] if m["model"] == label and m["method"] == own)
    tags = {
        f"{TAG}metric.{k}": v
        for k, v in point.items()
        if k not in ("model", "method") and isinstance(v, int | float) and math.isfinite(v)
    }
    tags.update(
        {
            f"{TAG}eval_fingerprint": summary["eval_fingerprint"],
            f"{TAG}eval_run_id": run_id,
            f"{TAG}model_identity": meta.get("model_identity") or "",
            f"{TAG}manifest_sha256": meta.get("manifest_sha256") or "",
            f"{TAG}config_hash": (
                sha256_json(meta["run_config"]) if meta.get("run_config") else ""
            ),
            f"{TAG}stage": meta.get("stage") if meta.get("stage") is not None else "",
            f"{TAG}source_checkpoint": meta["uri"],
        }
    )
    if str(meta["uri"]).startswith("zoo:"):  # which zoo file (the name alone may be re-exported)
        from textboost import zoo

        tags[f"{TAG}zoo_sha256"] = zoo.sha256(meta["uri"][len("zoo:") :])
    return tags


def registered_version(mlflow_cfg: MlflowConfig, uri: str) -> str | None:
    """The version of ``mlflow.registered_model`` that ``uri`` names (``models:/NAME@ALIAS``
    or ``models:/NAME/N``), or None for any other URI or another registered model."""
    if not uri.startswith(f"models:/{mlflow_cfg.registered_model}"):
        return None
    rest = uri[len(f"models:/{mlflow_cfg.registered_model}") :]
    if rest.startswith("/") and rest[1:].isdigit():
        return rest[1:]
    if rest.startswith("@"):
        v = version_by_alias(mlflow_cfg, rest[1:])
        return str(v.version) if v is not None else None
    return None


def register_evaluated(cfg, summary: dict) -> list[dict]:
    """Log each evaluated checkpoint as a pyfunc in the active run, register it, tag it, and
    apply the alias policy. A ``models:/`` URI of ``mlflow.registered_model`` itself (e.g. the
    ``@trained`` version of a training run) is not registered again: that version gets the
    evaluation's tags and the alias policy. Other ``models:/`` URIs are skipped. Returns one
    dict per version."""
    import mlflow

    run_id = mlflow.active_run().info.run_id
    out = []
    for label in summary["models"]:
        meta = summary["model_meta"][label]
        if meta["uri"].startswith("models:/"):
            version = registered_version(cfg.mlflow, meta["uri"])
            if version is not None:
                tag_version(cfg.mlflow, version, version_tags(summary, label, run_id))
                decision = maybe_promote(cfg.mlflow, version)
                out.append({"model": label, "model_uri": meta["uri"], **decision})
            continue
        info = log_codec_model(
            meta["uri"],
            name=f"codec-{label}".replace(".", "_"),  # MLflow model names reject "."
            registered_model=cfg.mlflow.registered_model,
            model_config={  # the operating point the evaluation measured
                "t_test": meta.get("t_test") or cfg.data.filter.t_test,
                "select": cfg.eval.select,
                "side_info_format": cfg.shards.side_info_format,
            },
        )
        version = str(info.registered_model_version)
        tag_version(cfg.mlflow, version, version_tags(summary, label, run_id))
        decision = maybe_promote(cfg.mlflow, version)
        out.append({"model": label, "model_uri": info.model_uri, **decision})
    return out


def register_trained(mlflow_cfg: MlflowConfig, run_id: str, checkpoint: str, stage: int,
                     model_config: dict) -> dict:  # fmt: skip
    """Log a training run's final checkpoint as a pyfunc codec in that run, register it in
    ``mlflow.registered_model`` and point the alias ``trained`` at it (whatever its rate: the
    next stage or the evaluation needs the model that was trained, not one that met the bpp
    budget). Returns ``{"version", "uri"}``."""
    import mlflow

    uri = mlflow_cfg.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with mlflow.start_run(run_id=run_id):
        info = log_codec_model(
            checkpoint, name="codec", registered_model=mlflow_cfg.registered_model,
            model_config=model_config,
        )  # fmt: skip
    version = str(info.registered_model_version)
    tag_version(mlflow_cfg, version, {f"{TAG}train_run_id": run_id, f"{TAG}stage": stage})
    client(mlflow_cfg).set_registered_model_alias(mlflow_cfg.registered_model, TRAINED, version)
    return {"version": version, "uri": f"models:/{mlflow_cfg.registered_model}@{TRAINED}"}
