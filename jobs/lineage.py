"""``textboost lineage MODEL_URI [--rebuild]``: registered model -> run -> config -> shards.

Follows a registered version (``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``) to the
checkpoint it wraps, the Ray Train run that produced it (MLflow run, tag
``textboost.ray_run_name``), the resolved training config (and its hash) stored in the
checkpoint, and the shard folder's ``manifest.json``, whose sha256 must equal the one the
checkpoint and the run recorded (docs/architecture.md "Lineage"). ``--rebuild`` regenerates
the training shards from the manifest's stored config and compares them byte for byte; the
exit status is non-zero on any mismatch. The tracing and its text are ``pipeline.lineage``;
this module parses the arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from textboost.config import load_config
from textboost.errors import ConfigError


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
    from pipeline.lineage import format_trace, parse_model_uri, rebuild, rebuild_verdict, trace
    from pipeline.tracking import check_tracking_uri

    parse_model_uri(args.model_uri)  # a malformed URI fails before anything is opened
    check_tracking_uri(uri, must_exist=True)  # before torch and MLflow clients load
    t = trace(args.model_uri, uri)
    if args.rebuild:
        t["rebuild"] = rebuild(t, args.into or None)
    if args.json:
        print(json.dumps(t, indent=2, default=str))
    else:
        print(format_trace(t))
        if args.rebuild:
            for error in t["rebuild"]["errors"]:
                print(f"MISMATCH {error}", file=sys.stderr)
            print(rebuild_verdict(t["rebuild"]))
    ok = t["shards"].get("matches", False) and t.get("rebuild", {"ok": True})["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
