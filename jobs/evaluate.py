"""``textboost evaluate CONFIG [key=value ...]``: real bitstreams, image metrics, text-spotting
F1 and baselines (paper 5.1.3), written to ``eval.out`` and logged to MLflow.

Config section ``eval``: ``models`` (checkpoint paths or MLflow model URIs; several lambdas give a
curve), ``dataset`` (synthetic | textocr | icdar2015 | folder | shards: the built val shards),
``limit``, ``baselines`` (jpeg, webp, backbone, avif, avif_min, avif_half), ``ocr``, ``out``,
``crops``, ``lpips``, ``track``, ``register``, ``workers`` (Ray tasks at once; 0 = in this
process), ``cpus_per_worker``, ``use_gpu``, ``gpus_per_worker``; the side-info filter threshold
is ``data.filter.t_test``. Finished images go to ``<out>/rows.jsonl``: run the same command again
to resume a stopped evaluation. Prints the results table.
"""

from __future__ import annotations

import argparse
import json

from jobs.common import add_config_args, config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="textboost evaluate", description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)

    from pipeline.evaluation import run_evaluation
    from pipeline.run_summary import results_table

    summary = run_evaluation(cfg)
    if args.json:
        print(json.dumps(summary, default=str))
        return 0
    print(results_table(summary))
    print(
        f"{summary['images']} images ({summary['rejected']} rejected), "
        f"{summary['seconds_per_image']:.2f} s per image, LPIPS {summary['lpips']}"
    )
    if "run_id" in summary:
        print(f"mlflow run: {summary['run_id']}")
    for r in summary.get("registered", []):
        alias = "candidate, champion" if r["champion"] else "candidate"
        print(f"registered {cfg.mlflow.registered_model} v{r['version']} ({alias}): {r['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
