"""``textboost lineage MODEL_URI [--rebuild]``: registered model -> run -> config -> shards.

Follows a registered version (``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``) to the
checkpoint it wraps, the Ray Train run that produced it (MLflow run, tag
``textboost.ray_run_name``), the resolved training config (and its hash) stored in the
checkpoint, and the shard folder's ``manifest.json``, whose sha256 must equal the one the
checkpoint and the run recorded (docs/architecture.md "Lineage"). ``--rebuild`` regenerates
the training shards from the manifest's stored config and compares them byte for byte; the
exit status is non-zero on any mismatch. The tracing is ``pipeline.lineage``; this module
parses the arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from textboost.config import load_config
from textboost.errors import ConfigError


def print_trace(t: dict) -> None:
    short = lambda h: (h or "?")[:12]  # noqa: E731
    m, ck = t["model"], t["checkpoint"]
    aliases = f" (aliases: {', '.join(t['aliases'])})" if t["aliases"] else ""
    print(
        f"model    models:/{m['name']}/{m['version']}{aliases}, logged by run {t['logged_by_run']}"
    )
    print(f"         checkpoint stage {ck['stage']}, identity {short(ck['model_identity'])}")
    run = t["train_run"]
    if run:
        print(
            f"run      {run['run_id']} {run['name']} ({run['status']}), git {short(run['git_commit'])}"
        )
    else:
        print("run      (no MLflow run found for the checkpoint's Ray Train run name)")
    mc = t["model_config"]
    print(f"config   hash {short(t['config_hash'])}: {mc['backbone']} N={mc['N']} M={mc['M']}")
    if t["init_checkpoint"]:
        print(f"         initialised from {t['init_checkpoint']}")
    z = t.get("init_zoo")
    if z:
        if z["sha256_now"] is None:
            state = "not in this installation's zoo"
        elif z["sha256"] is None:
            state = "not recorded by the run"
        else:
            state = "matches" if z["sha256"] == z["sha256_now"] else "DIFFERS FROM"
            state += f" this installation's zoo:{z['name']}"
        print(f"         zoo file sha256 {short(z['sha256'])} ({state})")
    s = t["shards"]
    if "error" in s:
        print(f"shards   {s['url']}: {s['error']}")
        return
    state = "matches" if s["matches"] else "DOES NOT MATCH"
    print(f"shards   {s['url']}")
    print(f"         manifest sha256 {short(s['manifest_sha256'])} {state} the checkpoint/run")
    for split, e in s["splits"].items():
        print(
            f"         {split}: {e['count']} samples in {e['shards']} shards, {e['rejected']} "
            f"rejected, config {short(e['config_hash'])}, source {short(e['source_fingerprint'])}"
        )
        if e["code_version"] != s["code_version_now"]:
            print(
                f"         note: built by code {e['code_version']}, this is "
                f"{s['code_version_now']}: a rebuild may differ"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="textboost lineage", description=__doc__.splitlines()[0])
    parser.add_argument("model_uri", help="models:/NAME/VERSION or models:/NAME@ALIAS")
    parser.add_argument("--tracking-uri", default="", help="MLflow URI (or MLFLOW_TRACKING_URI)")
    parser.add_argument("--config", default="", help="take mlflow.tracking_uri from this config")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the train shards, compare")
    parser.add_argument("--into", default="", help="scratch URL for --rebuild (default: temp dir)")
    parser.add_argument("--json", action="store_true", help="print the lineage as JSON")
    args = parser.parse_args(argv)
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if args.config:
        uri = load_config(args.config).mlflow.tracking_uri
    if not uri:
        raise ConfigError("give --tracking-uri, --config or MLFLOW_TRACKING_URI")
    from pipeline.lineage import parse_model_uri, rebuild, trace
    from pipeline.tracking import check_tracking_uri

    parse_model_uri(args.model_uri)  # a malformed URI fails before anything is opened
    check_tracking_uri(uri, must_exist=True)  # before torch and MLflow clients load
    t = trace(args.model_uri, uri)
    if args.rebuild:
        t["rebuild"] = rebuild(t, args.into or None)
    if args.json:
        print(json.dumps(t, indent=2, default=str))
    else:
        print_trace(t)
        if args.rebuild:
            print_rebuild(t["rebuild"])
    ok = t["shards"].get("matches", False) and t.get("rebuild", {"ok": True})["ok"]
    return 0 if ok else 1


def print_rebuild(report: dict) -> None:
    for error in report["errors"]:
        print(f"MISMATCH {error}", file=sys.stderr)
    verdict = "byte-identical" if report["ok"] else f"{len(report['errors'])} mismatches"
    print(f"rebuild  train: {report['compared']} shards regenerated and compared: {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
