"""``textboost registry list|promote CONFIG ...``: the MLflow model registry (aliases).

``list CONFIG [key=value ...]`` prints every version of ``mlflow.registered_model`` with its
aliases and evaluation metrics. ``promote CONFIG VERSION [key=value ...] [--alias champion]``
moves an alias by hand; ``--if-better`` applies the automatic rule instead (``candidate`` always,
``champion`` only when the version beats it on ``mlflow.champion_metric`` within
``mlflow.bpp_budget`` on the same evaluation set).
"""

from __future__ import annotations

import argparse
import json

from jobs.common import add_config_args
from textboost.config import load_config


def _print_versions(rows: list[dict], metric: str) -> None:
    print(f"{'version':>7}  {'aliases':<22}{'bpp':>9}{metric:>10}  run")
    for r in rows:
        m = r["metrics"]
        bpp = f"{float(m['bpp']):.4f}" if "bpp" in m else "n/a"
        score = f"{float(m[metric]):.4f}" if metric in m else "n/a"
        print(
            f"{r['version']:>7}  {','.join(r['aliases']) or '-':<22}{bpp:>9}{score:>10}  {r['run_id']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="textboost registry", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="versions, aliases and metrics")
    add_config_args(ls)
    ls.add_argument("--json", action="store_true")
    pr = sub.add_parser("promote", help="set an alias on a version")
    pr.add_argument("config", help="YAML config file (see configs/)")
    pr.add_argument("version", help="model version number")
    pr.add_argument("overrides", nargs="*", help="key=value overrides")
    pr.add_argument("--alias", default="champion")
    pr.add_argument("--if-better", action="store_true", help="apply the champion rule instead")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)

    from pipeline import registry, tracking

    tracking.connect_read_only(cfg.mlflow)  # an existing store: a mistyped path creates nothing
    if args.action == "list":
        rows = registry.list_versions(cfg.mlflow)
        if args.json:
            print(json.dumps(rows))
        else:
            _print_versions(rows, cfg.mlflow.champion_metric)
        return 0
    if args.if_better:
        decision = registry.maybe_promote(cfg.mlflow, args.version)
        status = "champion" if decision["champion"] else "not champion"
        print(f"v{args.version}: candidate, {status} ({decision['reason']})")
        return 0
    registry.promote(cfg.mlflow, args.version, args.alias)
    print(f"{cfg.mlflow.registered_model} v{args.version} is now @{args.alias}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
