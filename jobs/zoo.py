"""``textboost zoo list [--json] | show NAME [--json] | export CHECKPOINT NAME --card CARD``.

The model zoo (``textboost.zoo``): models shipped inside the package, usable anywhere a model
is as ``zoo:NAME`` (``--model zoo:NAME``, ``train.init_checkpoint``, ``eval.models``).
``export`` is for maintainers: it writes ``NAME.pt`` (fp16 weights) and ``NAME.json`` (the
card, from ``--card`` plus computed fields) into the zoo folder (``$TEXTBOOST_ZOO_DIR`` or the
package's ``textboost/zoo/weights``; ``--dir`` for another one).
"""

from __future__ import annotations

import argparse
import json

from textboost.errors import ZooError

COLUMNS = (  # header, card field, format
    ("name", "name", "{}"),
    ("bpp", "bpp", "{:.4f}"),
    ("PSNR", "psnr", "{:.2f}"),
    ("MS-SSIM", "ms_ssim", "{:.4f}"),
    ("DET F1", "det_f1", "{:.3f}"),
    ("E2E F1", "e2e_f1", "{:.3f}"),
    ("config", "config", "{}"),
)


def _cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def format_table(cards: list[dict]) -> str:
    """The cards as a fixed-width table (one row per model)."""
    rows = [[h for h, _, _ in COLUMNS]]
    rows += [[_cell(c.get(field), fmt) for _, field, fmt in COLUMNS] for c in cards]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def format_card(card: dict) -> str:
    """One card as ``key: value`` lines (nested values as compact JSON)."""
    width = max((len(k) for k in card), default=0)
    lines = []
    for k, v in card.items():
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        lines.append(f"{k.ljust(width)}  {text}")
    return "\n".join(lines)


def _read_card(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ZooError(f"cannot read the model card {path}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="textboost zoo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p_list = sub.add_parser("list", help="the shipped models, sorted by bpp")
    p_list.add_argument("--json", action="store_true", help="print the cards as a JSON list")
    p_show = sub.add_parser("show", help="one model's card")
    p_show.add_argument("name")
    p_show.add_argument("--json", action="store_true", help="print the card as JSON")
    p_export = sub.add_parser("export", help="ship a checkpoint as a zoo model (maintainers)")
    p_export.add_argument("checkpoint", help="checkpoint path/URL, runs:/ or models:/ URI")
    p_export.add_argument("name", help="zoo name (letters, digits, '.', '_', '-')")
    p_export.add_argument("--card", required=True, help="JSON file with the card's fields")
    p_export.add_argument("--dir", default=None, help="zoo folder (default: the package's)")
    p_export.add_argument("--overwrite", action="store_true", help="replace an existing model")
    args = parser.parse_args(argv)

    from textboost import zoo

    if args.action == "list":
        cards = zoo.list_models()
        if args.json:
            print(json.dumps(cards, indent=2, ensure_ascii=False))
        elif not cards:
            print(f"the zoo is empty ({zoo.directory()})")
        else:
            print(format_table(cards))
        return 0
    if args.action == "show":
        c = zoo.card(args.name)
        print(json.dumps(c, indent=2, ensure_ascii=False) if args.json else format_card(c))
        return 0
    c = zoo.export(
        args.checkpoint, args.name, _read_card(args.card), out_dir=args.dir,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(
        f"zoo:{c['name']}: {c['size_bytes'] / 1e6:.2f} MB (fp16), identity "
        f"{c['model_identity']}, sha256 {c['sha256'][:12]}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
