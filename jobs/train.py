"""``textboost train CONFIG stage=1|2 [key=value ...]``: one training stage on Ray Train.

Also runs as a Ray job: ``ray job submit -- python -m jobs.train CONFIG stage=1``. Prints the
final checkpoint and the MLflow run id (paper 4.3: stage 1 rate-distortion, stage 2 fusion
block with L_gc). Relaunch with the same ``train.run_name`` to resume a run.
"""

from __future__ import annotations

import argparse
import json
import re

from jobs.common import add_config_args
from textboost.config import load_config

_SHORTHAND = re.compile(r"^stage=")


def expand_overrides(overrides: list[str]) -> list[str]:
    """``stage=N`` is shorthand for ``train.stage=N``."""
    return [_SHORTHAND.sub("train.stage=", o) for o in overrides]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="textboost train", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, expand_overrides(args.overrides))

    from pipeline.training import run_training

    result = run_training(cfg)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(f"checkpoint: {result['checkpoint']}")
        print(f"mlflow run: {result['run_id']} ({result['run_name']})")
        if result.get("registered"):
            reg = result["registered"]
            print(f"registered: {reg['uri']} (v{reg['version']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
