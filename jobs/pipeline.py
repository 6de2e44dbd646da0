"""``textboost pipeline CONFIG [key=value ...]``: the whole chain, resumable stage by stage.

    data -> shards -> stage 1 -> stage 2 -> evaluate -> register

Argument parsing; the stages, their keys and the resume logic are ``pipeline.end_to_end``,
the summary printed at the end ``pipeline.run_summary``.
"""

from __future__ import annotations

import argparse
import os
import time

from jobs.common import add_config_args, config_from_args
from pipeline.console import quiet
from pipeline.end_to_end import run_pipeline
from pipeline.executor import shutdown_ray
from pipeline.run_summary import print_summary
from textboost.config import PIPELINE_STAGES, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="textboost pipeline", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument(
        "--force", action="append", default=[], choices=PIPELINE_STAGES, metavar="STAGE",
        help="run STAGE even when its outputs are up to date (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--verbose", action="store_true",
        help="show Ray, Ray Train and library output here instead of <workdir>/pipeline.log",
    )  # fmt: skip
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    if "://" not in cfg.workdir and not os.path.isabs(cfg.workdir):
        # Ray workers run in their own folders: every ${workdir} path must be absolute.
        absolute = f"workdir={os.path.abspath(cfg.workdir)}"
        cfg = load_config(args.config, [*args.overrides, absolute])
    start = time.perf_counter()
    if args.verbose or "://" in cfg.workdir:
        states = run_pipeline(cfg, tuple(args.force))
    else:
        log = os.path.join(cfg.workdir, "pipeline.log")
        print(f"textboost pipeline: Ray, Ray Train and library output go to {log}", flush=True)
        with quiet(log):
            try:
                states = run_pipeline(cfg, tuple(args.force))
            finally:  # Ray workers' late output (log monitor) still goes to the log file
                shutdown_ray()
    print_summary(cfg, states, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
