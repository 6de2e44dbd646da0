"""``python -m jobs.bench_zoo``: the full zoo comparison on the validation set.

Every shipped zoo model (or ``--models``) is evaluated with real bitstreams on
``assets/valset`` (held-out photos and fonts; ``python -m textboost.data.assets`` makes it) against
its backbone (same latents, no fusion), the overlay (same container, no learning), JPEG, WebP
and AVIF at the same bits, AVIF at its lowest quality and AVIF of the 2x-downscaled image.
Prints the results table and, per model, the issue's targets: TextBoost over its backbone
(DET and E2E F1 ratios, PSNR difference), over the overlay, and E2E F1 against AVIF's floor
and the originals. Each zoo model is evaluated at the side-info threshold its card was measured
at (``t_test``); a checkpoint or registered model (``--models``: the comparison models ROI,
TACO-style, TextBoost-TCM) at its training config's ``eval.t_test``: one evaluation
(``eval.model_t_test``), one table, one set of RD curves (a curve per backbone family). Logged
to MLflow (sqlite under ``--workdir``); outputs (per-image CSV, RD curves, crops) under
``<workdir>/eval``.
"""

from __future__ import annotations

import argparse
import sys

CONFIG = "configs/zoo/compare.yaml"


def _ratio(a, b) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return "-"
    return f"{a / b:.2f}x" if b > 0 else ("inf" if a > 0 else "-")


def targets_table(summary: dict) -> str:
    """Per model: the issue's targets against the backbone, overlay, AVIF and originals."""
    means = {(m.get("model"), m["method"]): m for m in summary["means"]}
    orig = next((m for m in summary["means"] if m["method"] == "original"), {})
    lines = [
        "\ntargets per model (TextBoost vs ...)",
        f"{'model':<18}{'bpp':>8}{'DET/bb':>8}{'E2E/bb':>8}{'dPSNR bb':>9}"
        f"{'E2E/ovl':>8}{'dPSNR ovl':>10}{'E2E/avif_min':>13}{'E2E/orig':>9}",
    ]
    kinds = {k: v.get("method", "textboost") for k, v in (summary.get("model_meta") or {}).items()}
    for model in summary["models"]:
        if kinds.get(model, "textboost") != "textboost":
            continue  # ROI / TACO-style: their own rows in the results table
        tb = means.get((model, "textboost"), {})
        bb = means.get((model, "backbone"), {})
        ov = means.get((model, "overlay"), {})
        am = means.get((model, "avif_min"), {})

        def diff(a, b):
            pa, pb = a.get("psnr"), b.get("psnr")
            return f"{pa - pb:+.2f}" if isinstance(pa, float) and isinstance(pb, float) else "-"

        lines.append(
            f"{model:<18}{tb.get('bpp', 0):>8.4f}{_ratio(tb.get('det_f1'), bb.get('det_f1')):>8}"
            f"{_ratio(tb.get('e2e_f1'), bb.get('e2e_f1')):>8}{diff(tb, bb):>9}"
            f"{_ratio(tb.get('e2e_f1'), ov.get('e2e_f1')):>8}{diff(tb, ov):>10}"
            f"{_ratio(tb.get('e2e_f1'), am.get('e2e_f1')):>13}"
            f"{_ratio(tb.get('e2e_f1'), orig.get('e2e_f1')):>9}"
        )
    return "\n".join(lines)


def _number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def model_threshold(uri: str) -> float:
    """The side-info threshold a model is compared at: a zoo card's ``t_test``, else the
    ``eval.t_test`` of the config it was trained with (0: the comparison's default)."""
    from textboost import zoo
    from textboost.model.checkpoint import load_checkpoint

    card = zoo.operating_threshold(uri)
    if card:
        return card
    _, meta = load_checkpoint(uri)
    value = ((meta.get("run_config") or {}).get("eval") or {}).get("t_test")
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m jobs.bench_zoo", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--models",
        help="comma-separated model URIs (default: every zoo model); URI@T: compare it at the "
        "side-info threshold T",
    )
    p.add_argument("--limit", type=int, default=0, help="first N validation images (0 = all)")
    p.add_argument("--workdir", default="runs/zoo-compare", help="outputs and MLflow database")
    p.add_argument(
        "--config", default=CONFIG,
        help=f"evaluation config (default {CONFIG}; configs/zoo/textfree.yaml: the text-free set)",
    )  # fmt: skip
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args(argv)

    from pipeline.evaluation import run_evaluation
    from pipeline.run_summary import results_table
    from textboost import zoo
    from textboost.config import load_config
    from textboost.errors import TextBoostError

    models = args.models.split(",") if args.models else [f"zoo:{n}" for n in zoo.names()]
    if not models:
        print("error: the zoo is empty: nothing to compare", file=sys.stderr)
        return 2
    picked = [uri.rpartition("@") if "@" in uri else (uri, "", "") for uri in models]
    models = [uri for uri, _, _ in picked]
    bad = [t for _, _, t in picked if t and not _number(t)]
    if bad:
        print(f"error: --models: URI@T needs a number T, got {bad[0]!r}", file=sys.stderr)
        return 2
    try:
        thresholds = [float(t) if t else model_threshold(uri) for uri, _, t in picked]
        selects = {zoo.operating_select(uri) for uri in models} - {None}
        # the zoo cards' word selection (all the same), unless an override sets eval.select
        overrides = [f"eval.select={selects.pop()}"] if len(selects) == 1 else []
        overrides += [f"workdir={args.workdir}", f"eval.limit={args.limit}", *args.overrides]
        overrides += ["eval.models=[" + ",".join(models) + "]"]
        overrides += ["eval.model_t_test=[" + ",".join(f"{t:g}" for t in thresholds) + "]"]
        cfg = load_config(args.config, overrides)
        summary = run_evaluation(cfg)
    except TextBoostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\nside-info threshold T per model (its card's, else its training config's eval.t_test):")
    for label in summary["models"]:
        meta = summary["model_meta"][label]
        print(f"  {label:<20} T = {meta['t_test']:g}  {meta['uri']}")
    print(results_table(summary))
    print(targets_table(summary))
    print(f"\noutputs: {summary['out']} (per_image.csv, summary.csv, rd_curves.png, crops/)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
