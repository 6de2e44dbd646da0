"""What ``textboost pipeline`` shows at the end: the stage table (ran or skipped, seconds),
the results table of the evaluation and where to look next. ``results_table`` also prints the
ablation's and the zoo benchmark's evaluations.
"""

from __future__ import annotations

from pipeline.console import say
from pipeline.stage_state import StageState
from textboost.config import TextBoostConfig


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
    width = max([18] + [len(m) + 2 for m in models])
    lpips = summary.get("lpips") == "available"
    head = f"{'model':<{width}}" if several else ""
    head += f"{'method':<22}{'bpp':>9}{'PSNR':>8}{'MS-SSIM':>9}" + (
        f"{'LPIPS':>7}" if lpips else ""
    )
    lines = [f"\nresults: {summary['images']} images, {summary.get('out', '')}", head]
    lines[-1] += f"{'DET F1':>8}{'E2E F1':>8}"
    for m in rows:
        model = "" if m["method"] == "original" else str(m.get("model", ""))
        if m["method"] == "original":  # only spotting is meaningful on the uncompressed images
            m = {"method": "original", "det_f1": m.get("det_f1"), "e2e_f1": m.get("e2e_f1")}
        cells = [
            _fmt(m.get("bpp"), 9, 4), _fmt(m.get("psnr"), 8, 2), _fmt(m.get("ms_ssim"), 9, 4),
            *([_fmt(m.get("lpips"), 7, 3)] if lpips else []),
            _fmt(m.get("det_f1"), 8, 3), _fmt(m.get("e2e_f1"), 8, 3),
        ]  # fmt: skip
        prefix = f"{model:<{width}}" if several else ""
        lines.append(prefix + f"{labels[m['method']]:<22}" + "".join(cells))
    return "\n".join(lines)


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{value:>{width}.{digits}f}" if isinstance(value, int | float) else f"{'-':>{width}}"
