"""Lineage of a registered model: registered version -> run -> config -> shards.

Follows a registered version (``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``) to the
checkpoint it wraps, the Ray Train run that produced it (MLflow run, tag
``textboost.ray_run_name``), the resolved training config (and its hash) stored in the
checkpoint, and the shard folder's ``manifest.json``, whose sha256 must equal the one the
checkpoint and the run recorded (docs/architecture.md "Lineage"). ``rebuild`` regenerates the
training shards from the manifest's stored config and compares them byte for byte.
``textboost lineage`` (``jobs/lineage.py``) parses the arguments and prints the result.
"""

from __future__ import annotations

import re

from pipeline.tracking import TAG
from textboost.config import TextBoostConfig, config_hash, section_from_dict
from textboost.errors import ConfigError, ShardError, TextBoostError


def parse_model_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """``(name, version or None, alias or None)`` of a ``models:/`` URI (no I/O)."""
    match = re.fullmatch(r"models:/([^/@]+)(?:/(\d+)|@([\w-]+))", model_uri)
    if not match:
        raise ConfigError(
            f"{model_uri!r} is not a registered model URI; use models:/NAME/VERSION or "
            "models:/NAME@ALIAS (see `textboost registry list`)"
        )
    return match.groups()


def _version(client, model_uri: str):
    """The registered version a ``models:/`` URI names."""
    from mlflow.exceptions import MlflowException

    name, number, alias = parse_model_uri(model_uri)
    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, number)
    except MlflowException as exc:
        raise ConfigError(f"{model_uri}: not in the registry ({exc.message})") from None


def _training_run(client, version, run_config: dict):
    """The MLflow run of the Ray Train run that wrote the checkpoint."""
    run_id = version.tags.get(f"{TAG}train_run_id")
    if run_id:
        return client.get_run(run_id)
    exp = client.get_experiment_by_name(run_config["mlflow"]["experiment"])
    name = run_config["train"]["run_name"]
    if exp is None or not name:
        return None
    found = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{TAG}ray_run_name` = '{name}'", max_results=1
    )
    return found[0] if found else None


def trace(model_uri: str, tracking_uri: str) -> dict:
    """Everything between a registered version and its training shards, as a dict."""
    import mlflow
    from mlflow import MlflowClient

    from pipeline.tracking import check_tracking_uri
    from textboost.model.checkpoint import load_checkpoint

    check_tracking_uri(tracking_uri, must_exist=True)  # before any client: fails in seconds
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    version = _version(client, model_uri)
    _, meta = load_checkpoint(f"models:/{version.name}/{version.version}")
    run_config = meta.get("run_config") or {}
    if "train" not in run_config:
        raise TextBoostError(f"{model_uri}: its checkpoint carries no training config")
    cfg = section_from_dict(TextBoostConfig, run_config)
    run = _training_run(client, version, run_config)
    shards = run_config["train"]["shards"]
    out = {
        "model": {"name": version.name, "version": str(version.version)},
        "aliases": sorted(version.aliases),
        "logged_by_run": version.run_id,
        "checkpoint": {k: meta.get(k) for k in ("stage", "model_identity", "manifest_sha256")},
        "config_hash": config_hash(cfg),
        "model_config": run_config["model"],
        "train_run": None,
        "shards": {"url": shards},
        "init_checkpoint": run_config["train"].get("init_checkpoint") or None,
        "init_zoo": None,
    }
    if run is not None:
        tags = run.data.tags
        out["train_run"] = {
            "run_id": run.info.run_id,
            "name": run.info.run_name,
            "status": run.info.status,
            "config_hash": tags.get(f"{TAG}config_hash"),
            "manifest_sha256": tags.get(f"{TAG}manifest_sha256"),
            "git_commit": tags.get(f"{TAG}git_commit"),
        }
    if (out["init_checkpoint"] or "").startswith("zoo:"):
        out["init_zoo"] = _zoo_lineage(out["init_checkpoint"], run)
    out["shards"].update(_shard_lineage(shards, meta, out["train_run"]))
    return out


def _shard_lineage(shards: str, meta: dict, train_run: dict | None) -> dict:
    """The shard folder's manifest: its sha256, per split counts, hashes and code version
    (and today's), and whether checkpoint and run recorded that manifest."""
    from pipeline.code_version import code_version
    from pipeline.shards import manifest_sha256, read_manifest

    try:
        manifest, sha = read_manifest(shards), manifest_sha256(shards)
    except (ShardError, OSError) as exc:
        return {"error": str(exc)}
    found = {"manifest_sha256": sha, "splits": {}}
    for split, entry in manifest["splits"].items():
        keys = ("count", "rejected", "config_hash", "source_fingerprint", "code_version")
        found["splits"][split] = {
            "shards": len(entry["shards"]),
            **{k: entry.get(k) for k in keys},
        }
    found["code_version_now"] = code_version()
    recorded = {meta.get("manifest_sha256")}
    if train_run:
        recorded.add(train_run["manifest_sha256"])
    found["matches"] = recorded == {sha}
    return found


def _zoo_lineage(init: str, run) -> dict:
    """A ``zoo:NAME`` init checkpoint: the sha256 of the zoo file that the training run
    recorded (tag ``textboost.init_zoo_sha256``) and of the zoo's file now (None: gone)."""
    from textboost import zoo
    from textboost.errors import ZooError

    name = init[len("zoo:") :]
    recorded = run.data.tags.get(f"{TAG}init_zoo_sha256") if run is not None else None
    try:
        now = zoo.sha256(name)
    except (ZooError, OSError):
        now = None
    return {"name": name, "sha256": recorded, "sha256_now": now}


def rebuild(t: dict, into: str | None) -> dict:
    """Regenerate the training split from its manifest and compare bytes (``pipeline.shards``)."""
    from pipeline.shard_check import rebuild_check

    if "error" in t["shards"]:
        return {"ok": False, "compared": 0, "errors": [t["shards"]["error"]]}
    return rebuild_check(t["shards"]["url"], ["train"], None, [], into=into)


def _short(h: str | None) -> str:
    return (h or "?")[:12]


def format_trace(t: dict) -> str:
    """The lineage ``trace`` returns, as ``textboost lineage`` prints it."""
    m, ck = t["model"], t["checkpoint"]
    aliases = f" (aliases: {', '.join(t['aliases'])})" if t["aliases"] else ""
    lines = [
        f"model    models:/{m['name']}/{m['version']}{aliases}, logged by run {t['logged_by_run']}",
        f"         checkpoint stage {ck['stage']}, identity {_short(ck['model_identity'])}",
    ]
    run = t["train_run"]
    if run:
        lines.append(
            f"run      {run['run_id']} {run['name']} ({run['status']}), "
            f"git {_short(run['git_commit'])}"
        )
    else:
        lines.append("run      (no MLflow run found for the checkpoint's Ray Train run name)")
    mc = t["model_config"]
    lines.append(
        f"config   hash {_short(t['config_hash'])}: {mc['backbone']} N={mc['N']} M={mc['M']}"
    )
    if t["init_checkpoint"]:
        lines.append(f"         initialised from {t['init_checkpoint']}")
    if t.get("init_zoo"):
        lines.append(_zoo_line(t["init_zoo"]))
    return "\n".join(lines + _shard_lines(t["shards"]))


def _zoo_line(z: dict) -> str:
    if z["sha256_now"] is None:
        state = "not in this installation's zoo"
    elif z["sha256"] is None:
        state = "not recorded by the run"
    else:
        state = "matches" if z["sha256"] == z["sha256_now"] else "DIFFERS FROM"
        state += f" this installation's zoo:{z['name']}"
    return f"         zoo file sha256 {_short(z['sha256'])} ({state})"


def _shard_lines(s: dict) -> list[str]:
    if "error" in s:
        return [f"shards   {s['url']}: {s['error']}"]
    state = "matches" if s["matches"] else "DOES NOT MATCH"
    lines = [
        f"shards   {s['url']}",
        f"         manifest sha256 {_short(s['manifest_sha256'])} {state} the checkpoint/run",
    ]
    for split, e in s["splits"].items():
        lines.append(
            f"         {split}: {e['count']} samples in {e['shards']} shards, {e['rejected']} "
            f"rejected, config {_short(e['config_hash'])}, "
            f"source {_short(e['source_fingerprint'])}"
        )
        if e["code_version"] != s["code_version_now"]:
            lines.append(
                f"         note: built by code {e['code_version']}, this is "
                f"{s['code_version_now']}: a rebuild may differ"
            )
    return lines


def rebuild_verdict(report: dict) -> str:
    """The one-line outcome of ``rebuild`` (its errors are listed separately)."""
    verdict = "byte-identical" if report["ok"] else f"{len(report['errors'])} mismatches"
    return f"rebuild  train: {report['compared']} shards regenerated and compared: {verdict}"
