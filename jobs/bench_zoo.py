"""``python -m jobs.bench_zoo``: the full zoo comparison on the validation set.

Every shipped zoo model (or ``--models``) is evaluated with real bitstreams on
``assets/valset`` (held-out photos and fonts; ``python -m textboost.assets`` makes it) against
its backbone (same latents, no fusion), the overlay (same container, no learning), JPEG, WebP
and AVIF at the same bits, AVIF at its lowest quality and AVIF of the 2x-downscaled image.
Prints the results table and, per model, the issue's targets: TextBoost over its backbone
(DET and E2E F1 ratios, PSNR difference), over the overlay, and E2E F1 against AVIF's floor
and the originals. Each zoo model is evaluated at the side-info threshold its card was measured
at (``t_test``), one evaluation per threshold. Logged to MLflow (sqlite under ``--workdir``);
outputs (per-image CSV, RD curves, crops) under ``<workdir>/eval-t<T>``.
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
    for model in summary["models"]:
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m jobs.bench_zoo", description=__doc__.splitlines()[0]
    )
    p.add_argument("--models", help="comma-separated model URIs (default: every zoo model)")
    p.add_argument("--limit", type=int, default=0, help="first N validation images (0 = all)")
    p.add_argument("--workdir", default="runs/zoo-compare", help="outputs and MLflow database")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args(argv)

    from jobs.pipeline import results_table
    from pipeline.evaluation import run_evaluation
    from textboost import zoo
    from textboost.config import load_config
    from textboost.errors import TextBoostError

    models = args.models.split(",") if args.models else [f"zoo:{n}" for n in zoo.names()]
    if not models:
        print("error: the zoo is empty: nothing to compare", file=sys.stderr)
        return 2
    groups: dict[float, list[str]] = {}  # each model at the threshold its card was measured at
    for uri in models:
        groups.setdefault(zoo.operating_threshold(uri) or 0.0, []).append(uri)
    for t_test, uris in sorted(groups.items()):
        overrides = [f"workdir={args.workdir}", f"eval.limit={args.limit}", *args.overrides]
        overrides += ["eval.models=[" + ",".join(uris) + "]"]
        if t_test:
            overrides += [f"eval.t_test={t_test:g}", f"eval.out={args.workdir}/eval-t{t_test:g}"]
        try:
            cfg = load_config(CONFIG, overrides)
            summary = run_evaluation(cfg)
        except TextBoostError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"\nside-info threshold T = {t_test or cfg.data.filter.t_test:g}: {', '.join(uris)}")
        print(results_table(summary))
        print(targets_table(summary))
        print(f"\noutputs: {summary['out']} (per_image.csv, summary.csv, rd_curves.png, crops/)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
