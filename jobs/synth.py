"""``textboost synth``: write the synthetic scene-text set (TextOCR or ICDAR 2015 layout).

    textboost synth --out DIR --images N --seed S [--format textocr|icdar2015] [--backgrounds DIR]
    textboost synth --config configs/quickstart.yaml [key=value ...] [flags]

Flags override the config's ``data.synth`` section. ``--ocr-check K`` runs RapidOCR on the
first K images and prints the share of legible words it reads per cap-height bucket: large
words should mostly be read, small ones mostly not (the regime of paper 1 and 4.1).
"""

from __future__ import annotations

import argparse
import io

from textboost.config import SynthConfig, load_config, section_from_dict, to_dict
from textboost.errors import ConfigError
from textboost.text.words import Word

FLAG_KEYS = ("images", "seed", "format", "backgrounds", "fonts", "max_side", "min_side")
READ_BUCKETS = ((0.0, 12.0, "<12 px"), (12.0, 30.0, "12-30 px"), (30.0, 1e9, ">30 px"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="textboost synth",
        description="Write the synthetic scene-text set (TextOCR or ICDAR 2015 layout).",
    )
    p.add_argument("overrides", nargs="*", help="key=value config overrides (with --config)")
    p.add_argument("--config", help="YAML config; its data.synth section gives the defaults")
    p.add_argument("--out", help="output folder (default with --config: <data.root>/synth)")
    p.add_argument("--images", type=int, help="number of images")
    p.add_argument("--seed", type=int, help="seed: image i depends only on (seed, i)")
    p.add_argument("--format", choices=("textocr", "icdar2015"))
    p.add_argument("--backgrounds", help="folder of photos to crop backgrounds from")
    p.add_argument("--fonts", help="font folders, ':'-separated (default: /usr/share/fonts)")
    p.add_argument("--max-side", type=int, help="long side of the images in pixels")
    p.add_argument("--min-side", type=int, help="smallest short side in pixels")
    p.add_argument("--words", type=int, nargs=2, metavar=("MIN", "MAX"), help="words per image")
    p.add_argument("--split", default="train", help="TextOCR 'set' field (default: train)")
    p.add_argument("--workers", type=int, default=1, help="processes (same bytes for any count)")
    p.add_argument("--ocr-check", type=int, default=0, metavar="K", help="RapidOCR on K images")
    return p


def synth_config(args: argparse.Namespace) -> tuple[SynthConfig, str]:
    """The validated ``SynthConfig`` (config file, then overrides, then flags) and out dir."""
    if args.overrides and not args.config:
        raise ConfigError("key=value overrides need --config; use the flags without a config")
    cfg = load_config(args.config, args.overrides) if args.config else None
    values = to_dict(cfg.data.synth if cfg else SynthConfig())
    values.update({k: getattr(args, k) for k in FLAG_KEYS if getattr(args, k) is not None})
    if args.words:
        values["words_min"], values["words_max"] = args.words
    out = args.out or (f"{cfg.data.root}/synth" if cfg else None)
    if not out:
        raise ConfigError("synth needs --out DIR (or --config, which puts it in data.root)")
    return section_from_dict(SynthConfig, values), out


def _norm(text: str) -> str:
    return "".join(text.split()).upper()


def ocr_read_flags(result: list | None, words: list[Word]) -> list[bool]:
    """For each word: did a RapidOCR detection overlapping it read its text (case-insensitive)?

    A detection overlaps a word when their intersection covers half of the smaller of the two.
    """
    from shapely.geometry import Polygon

    dets = [(Polygon(box).buffer(0), _norm(text)) for box, text, _ in (result or [])]
    flags = []
    for word in words:
        wp = Polygon(word.polygon).buffer(0)
        flags.append(
            any(
                text == _norm(word.text) and wp.intersection(dp).area >= 0.5 * min(wp.area, dp.area)
                for dp, text in dets
            )
        )
    return flags


def ocr_read_counts(images, counts: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """Add each image's legible words, read or not, to ``counts`` (bucket -> [read, total]).

    ``images`` yields ``(RGB image, [(word, cap height px), ...])``; the image goes to RapidOCR
    through ``textboost.text.ocr.run_rapidocr`` (RGB -> BGR, the shared engine).
    """
    from textboost.text.ocr import run_rapidocr

    counts = counts if counts is not None else {name: [0, 0] for _, _, name in READ_BUCKETS}
    for image, legible in images:
        result = run_rapidocr(image)
        for (_, cap), ok in zip(legible, ocr_read_flags(result, [w for w, _ in legible])):
            name = next(n for lo, hi, n in READ_BUCKETS if lo <= cap < hi)
            counts[name][0] += int(ok)
            counts[name][1] += 1
    return counts


def ocr_check(synth: SynthConfig, k: int) -> dict[str, tuple[int, int]]:
    """Readability of the first ``k`` images' legible words: bucket -> (read, total)."""
    from PIL import Image

    from textboost.data.synth import synth_words
    from textboost.data.synth_sets import jpeg_bytes

    def images():
        for i in range(k):
            image, placed = synth_words(
                i,
                synth.seed,
                max_side=synth.max_side,
                min_side=synth.min_side,
                words=(synth.words_min, synth.words_max),
                backgrounds=synth.backgrounds or None,
                fonts=synth.fonts,
            )
            decoded = Image.open(io.BytesIO(jpeg_bytes(image)))  # exactly the written file
            yield decoded, [(sw.word, sw.cap_height) for sw in placed if sw.word.legible]

    counts = ocr_read_counts(images())
    return {name: (read, total) for name, (read, total) in counts.items()}


def main(argv: list[str] | None = None) -> int:
    from textboost.data.synth_sets import generate_from_config

    args = build_parser().parse_args(argv)
    synth, out = synth_config(args)
    summary = generate_from_config(
        synth, out, split=args.split, workers=args.workers, progress=True
    )
    print(
        f"synth: {summary['images']} images, {summary['words']} words "
        f"({summary['legible']} legible, {summary['illegible']} illegible), "
        f"{summary['fonts']} fonts, {summary['seconds']:.1f} s = "
        f"{summary['images_per_s']:.2f} images/s ({args.workers} worker(s))"
    )
    print(f"  {synth.format} -> {summary['paths']['annotations']}")
    print("  cap height (px)  words")
    for bucket, n in summary["cap_height_hist"].items():
        print(f"  {bucket:>15}  {n}")
    if args.ocr_check:
        print(f"RapidOCR readability of legible words on the first {args.ocr_check} images:")
        for name, (read, total) in ocr_check(synth, args.ocr_check).items():
            share = f"{read / total:.0%}" if total else "-"
            print(f"  cap {name:>9}: {read}/{total} read ({share})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
