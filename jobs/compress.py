"""``textboost compress IMAGE -o FILE.tbx --model MODEL [--ocr auto|ANNOTATIONS]``.

OCR words come from annotations (TextOCR JSON with ``--image-id``, or an ICDAR 2015 gt file)
or from RapidOCR (``--ocr auto``); they are filtered by average character area with
``--t`` (T_test = 800 on full-resolution images, paper 5.1.4), carried as side info and
rendered into the guidance map at decode time. ``--select legible`` (a colour model) lets the
encoder's OCR look at the decoder's output first: words it already reads are not sent, the
others at the lowest strength still read (``textboost.codec.legibility``). Prints the bpp split
into image and side info.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.common import (
    check_model_service,
    positive_float,
    positive_int,
    refuse_same_file,
    write_output,
)
from textboost.codec.container import MAX_PIXELS
from textboost.text.words import Word

DEFAULT_T = 800.0  # the paper's T_test on full-resolution images (data.filter.t_test)


def ocr_words(image, ocr: str | None, image_id: str | None) -> list[Word]:
    """Words of ``image``: none, RapidOCR (``auto``) or an annotation file."""
    if not ocr:
        return []
    if ocr == "auto":
        from textboost.text.ocr import ocr_image_words

        return ocr_image_words(image)  # RGB -> the BGR array RapidOCR expects
    from textboost.text.ocr import read_annotations

    return read_annotations(ocr, image_id)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textboost compress", description=__doc__.split("\n")[0])
    parser.add_argument("image", help="input image (path or fsspec URL)")
    parser.add_argument("-o", "--output", required=True, help="output .tbx container")
    parser.add_argument(
        "--model", required=True, help="checkpoint path/URL, MLflow model URI or zoo:NAME"
    )
    parser.add_argument("--ocr", default=None, help="'auto' (RapidOCR) or an annotation file")
    parser.add_argument(
        "--image-id", default=None, help="image id in a TextOCR JSON (default: file stem)"
    )
    parser.add_argument(
        "--t", type=positive_float, default=None,
        help="average-character-area threshold (default: the zoo model card's t_test, else "
        f"{DEFAULT_T:g})",
    )  # fmt: skip
    parser.add_argument(
        "--select", choices=["threshold", "legible"], default=None,
        help="which thresholded words to send: all (threshold) or those the decoder's output "
        "does not already read, each at the lowest strength read (legible; colour models); "
        "default: the zoo model card's select, else threshold",
    )  # fmt: skip
    parser.add_argument("--side-info-format", default="compact", choices=["compact", "gzip"])
    parser.add_argument(
        "--max-pixels", type=positive_int, default=MAX_PIXELS,
        help=f"refuse larger images, checked from the header (default {MAX_PIXELS}; "
        "decompress has the same limit)",
    )  # fmt: skip
    return parser


def default_threshold(model: str) -> float:
    """The operating threshold a zoo model was evaluated at (its card's ``t_test``), else 800."""
    from textboost import zoo

    return zoo.operating_threshold(model) or DEFAULT_T


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for source in (args.image, args.model, args.ocr):
        if source and source != "auto":
            refuse_same_file(source, args.output)

    from textboost import zoo
    from textboost.codec.container import describe
    from textboost.codec.image_codec import encode_image, open_image
    from textboost.codec.legibility import choose_words
    from textboost.model.checkpoint import load_checkpoint
    from textboost.text.filtering import filter_words

    image = open_image(args.image, args.max_pixels)
    image_id = args.image_id or Path(args.image).stem
    words = ocr_words(image, args.ocr, image_id)
    kept, dropped = filter_words(words, args.t or default_threshold(args.model))
    check_model_service(args.model)
    model, _ = load_checkpoint(args.model)
    select = args.select or zoo.operating_select(args.model) or "threshold"
    chosen = choose_words(model, image, kept, select, args.side_info_format)
    kept, note = chosen.words, ""
    if select == "legible":
        note = (
            f" (legible: {len(chosen.already_read)} already read, "
            f"{len(chosen.unreadable)} not worth sending)"
        )
    data = encode_image(model, image, kept, args.side_info_format, args.max_pixels, chosen.levels)
    write_output(args.output, data, "container")
    d = describe(data)
    print(
        f"{args.output}: {d['total_bytes']} bytes, {d['width']}x{d['height']}, "
        f"words sent {len(kept)}/{len(words)}{note}\n"
        f"bpp total {d['bpp_total']:.5f} = image {d['bpp_image']:.5f} "
        f"+ side info {d['bpp_side_info']:.5f} + container {d['bpp_overhead']:.5f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
