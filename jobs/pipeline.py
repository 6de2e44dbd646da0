"""``textboost pipeline CONFIG [key=value ...]``: the whole chain, resumable stage by stage.

    data -> shards -> stage 1 -> stage 2 -> evaluate -> register

Argument parsing and the summary printed at the end; the stages, their keys and the resume
logic are ``pipeline.end_to_end``.
"""

from __future__ import annotations

import argparse
import os
import time

from jobs.common import add_config_args, config_from_args
from pipeline.console import quiet, say
from pipeline.end_to_end import run_pipeline
from pipeline.stage_state import StageState
from textboost.config import PIPELINE_STAGES, TextBoostConfig, load_config


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
                _shutdown_ray()
    print_summary(cfg, states, time.perf_counter() - start)
    return 0


def _shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def print_summary(cfg: TextBoostConfig, states: dict[str, dict], total: float) -> None:
    """Stage timings, the results table and where to look next."""
    say("\nstage      status     seconds")
    for name, state in states.items():
        status = "skipped" if state.get("skipped") else "ran"
        say(f"{name:<10} {status:<10} {state['wall_s']:>7.1f}")
    say(f"{'total':<21} {total:>7.1f}")
    evaluation = _latest(cfg, states, "evaluate")
    if evaluation:
        say(results_table(evaluation["summary"]))
    register = _latest(cfg, states, "register")
    if register:
        champion = "champion" if register.get("champion") else f"not champion: {register['reason']}"
        say(f"\nregistered: {register['uri']} ({champion})")
        say(
            f"lineage:    textboost lineage {register['uri']} --tracking-uri {cfg.mlflow.tracking_uri}"
        )
    uri = cfg.mlflow.tracking_uri
    if uri.startswith("sqlite:"):
        say(f"open MLflow: mlflow ui --backend-store-uri {uri}  (then http://127.0.0.1:5000)")
    else:
        say(f"open MLflow: {uri}")


def _latest(cfg: TextBoostConfig, states: dict[str, dict], name: str) -> dict | None:
    if name in states:
        return states[name]["outputs"]
    state = StageState.load(cfg.workdir, name).data
    return state.get("outputs") if state.get("status") == "done" else None


def results_table(summary: dict) -> str:
    """bpp, PSNR, MS-SSIM and DET / E2E F1 per model and method (means over the images)."""
    labels = {"textboost": "TextBoost", "roi": "ROI", "taco_style": "TACO-style, no CLIP"}
    labels |= {"backbone": "Backbone", "overlay": "Overlay (no learning)"}
    labels |= {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}
    labels |= {"avif_min": "AVIF (lowest quality)", "avif_half": "AVIF (half size)"}
    labels["original"] = "Original (F1 ceiling)"
    rows = [m for m in summary["means"] if m["method"] in labels]
    models = list(summary.get("models") or [])
    order = lambda m: (  # noqa: E731
        m["method"] == "original",
        models.index(m.get("model")) if m.get("model") in models else 0,
        list(labels).index(m["method"]),
    )
    rows.sort(key=order)
    several = len(models) > 1
    head = f"{'model':<18}" if several else ""
    lines = [
        f"\nresults: {summary['images']} images, {summary.get('out', '')}",
        head + f"{'method':<22}{'bpp':>9}{'PSNR':>8}{'MS-SSIM':>9}{'DET F1':>8}{'E2E F1':>8}",
    ]
    for m in rows:
        model = "" if m["method"] == "original" else str(m.get("model", ""))
        if m["method"] == "original":  # only spotting is meaningful on the uncompressed images
            m = {"method": "original", "det_f1": m.get("det_f1"), "e2e_f1": m.get("e2e_f1")}
        cells = [
            _fmt(m.get("bpp"), 9, 4), _fmt(m.get("psnr"), 8, 2), _fmt(m.get("ms_ssim"), 9, 4),
            _fmt(m.get("det_f1"), 8, 3), _fmt(m.get("e2e_f1"), 8, 3),
        ]  # fmt: skip
        prefix = f"{model:<18}" if several else ""
        lines.append(prefix + f"{labels[m['method']]:<22}" + "".join(cells))
    return "\n".join(lines)


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{value:>{width}.{digits}f}" if isinstance(value, int | float) else f"{'-':>{width}}"


if __name__ == "__main__":
    raise SystemExit(main())
