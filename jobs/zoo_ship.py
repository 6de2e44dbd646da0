"""``python -m jobs.zoo_ship CONFIG NAME``: ship a finished zoo pipeline run as ``zoo:NAME``.

Reads ``<workdir>/pipeline/*.json`` of ``textboost pipeline CONFIG`` (stage 1, stage 2,
evaluation), writes the model card (config, data, steps, wall time, and bpp / PSNR / MS-SSIM /
DET / E2E F1 of TextBoost, its backbone, the overlay and the classic codecs on the evaluation
set) and exports the final checkpoint (stage 2; stage 1 for the ROI and TACO-style baselines,
which have no fusion block) into the package's zoo or ``--out-dir`` (fp16 weights,
``textboost.zoo.export``). ``--base CONFIG`` names the pipeline whose stage 1 this one
fine-tuned, so the card counts both; a config that starts from a shipped model
(``train.init_checkpoint: zoo:NAME``) counts that model's card (its steps and wall time, stage 2
included). The card is ``pipeline.zoo_card``; this module parses the arguments and prints.
"""

from __future__ import annotations

import argparse
import sys

# --out-dir is outside the wheel (models/comparisons): one file up to 16 MB (the CPU-sized
# TextBoost-TCM is 9.8 MB in fp16), the folder up to 64 MB
OUT_DIR_LIMITS = (16_000_000, 64_000_000)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.zoo_ship", description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("name")
    p.add_argument("--base", help="config of the pipeline whose stage 1 this one fine-tuned")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument(
        "--recard", metavar="EVAL_DIR",
        help="keep the shipped NAME's weights and training record; take its figures, t_test "
        "and select from this evaluation of zoo:NAME under CONFIG",
    )  # fmt: skip
    p.add_argument(
        "--out-dir",
        help="write NAME.pt / NAME.json here instead of the zoo folder "
        "(the comparison models: models/comparisons)",
    )
    args = p.parse_args(argv)

    from pipeline.zoo_card import build_card
    from textboost import zoo
    from textboost.errors import TextBoostError

    if args.recard:
        return _recard(args)
    try:
        checkpoint, card = build_card(args.config, args.name, args.base)
        written = zoo.export(
            checkpoint, args.name, card, out_dir=args.out_dir, overwrite=args.overwrite,
            limits=OUT_DIR_LIMITS if args.out_dir else None,
        )  # fmt: skip
    except TextBoostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = f"{args.out_dir}/{args.name}.pt" if args.out_dir else f"zoo:{args.name}"
    print(f"{where}: {written['size_bytes'] / 1e6:.1f} MB, bpp {written['bpp']:.4f}")
    return 0


def _recard(args) -> int:
    from pipeline.zoo_card import reevaluated_card
    from textboost import zoo
    from textboost.errors import TextBoostError

    try:
        card = reevaluated_card(zoo.card(args.name), args.config, args.recard)
        zoo.write_card(args.name, card)
    except TextBoostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"zoo:{args.name}: card updated from {args.recard}, bpp {card['bpp']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
