"""``textboost render``: the guidance map of an image's OCR words, to look at (paper 4.1).

    textboost render IMAGE --ocr ANNOTATIONS [--image-id ID] [--t 800] --out GUIDE.png
                     [--overlay OVERLAY.png] [--side-info compact|gzip|none]

ANNOTATIONS is a TextOCR JSON (the image id defaults to the image's file stem), an ICDAR
2015 gt txt, or ``rapidocr`` to run the OCR engine on the image. Words are filtered by
average character area (``--t``, default T_test), sent through the side-info codec and the
map is rendered from the decoded words: exactly what the decoder sees. The overlay shows
the map in red over the darkened image with the sent boxes in green (first corner cyan).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import PurePosixPath

from textboost.config import FilterConfig
from textboost.text.words import Word


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="textboost render", description=__doc__.splitlines()[0])
    p.add_argument("image", help="image file or fsspec URL")
    p.add_argument("--ocr", required=True, help="TextOCR JSON, ICDAR 2015 gt txt, or 'rapidocr'")
    p.add_argument("--image-id", help="TextOCR image id (default: the image's file stem)")
    p.add_argument("--t", type=float, default=FilterConfig().t_test, help="filter threshold T")
    p.add_argument("--out", required=True, help="guidance map PNG to write")
    p.add_argument("--overlay", help="also write the map over the image to this PNG")
    p.add_argument("--side-info", choices=("compact", "gzip", "none"), default="compact")
    return p


def read_words(args: argparse.Namespace, image) -> list[Word]:
    from textboost.text.ocr import ocr_image_words, read_annotations

    if args.ocr == "rapidocr":
        return ocr_image_words(image)
    image_id = args.image_id or PurePosixPath(args.image.rstrip("/")).stem
    return read_annotations(args.ocr, image_id=image_id)


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from textboost.codec.image_codec import open_image
    from textboost.text.filtering import filter_words, reason_kind
    from textboost.text.guidance import overlay, render_guidance
    from textboost.text.side_info import bits_per_pixel, decode_side_info, encode_side_info

    args = build_parser().parse_args(argv)
    image = open_image(args.image)
    width, height = image.size
    words = read_words(args, image)
    kept, dropped = filter_words(words, args.t)
    reasons = Counter(reason_kind(r) for _, r in dropped)
    print(f"{len(words)} words, {len(kept)} kept (T={args.t:g}), dropped: {dict(reasons)}")
    sent = kept
    for fmt in ("compact", "gzip"):
        data = encode_side_info(kept, (width, height), fmt)
        bpp = bits_per_pixel(data, width, height)
        print(f"side info {fmt}: {len(data)} bytes = {bpp:.5f} bpp at {width}x{height}")
        if fmt == args.side_info:
            sent = decode_side_info(data)
    guidance = render_guidance(sent, height, width)
    Image.fromarray(guidance).save(args.out)
    print(f"guidance map -> {args.out} ({int((guidance > 0).sum())} ink pixels)")
    if args.overlay:
        overlay(image, guidance, sent).save(args.overlay)
        print(f"overlay -> {args.overlay}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
