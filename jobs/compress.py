"""``textboost compress IMAGE -o FILE.tbx --model MODEL [--ocr auto|ANNOTATIONS]``.

OCR words come from annotations (TextOCR JSON with ``--image-id``, or an ICDAR 2015 gt file)
or from RapidOCR (``--ocr auto``); they are filtered by average character area with
``--t`` (T_test = 800 on full-resolution images, paper 5.1.4), carried as side info and
rendered into the guidance map at decode time. Prints the bpp split into image and side info.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from textboost.errors import ImageError
from textboost.words import Word


def load_image(path: str):
    """Open an image file as RGB (``ImageError`` if it cannot be decoded)."""
    import fsspec
    from PIL import Image, UnidentifiedImageError

    try:
        with fsspec.open(path, "rb") as f:
            image = Image.open(f)
            image.load()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from None
    return image.convert("RGB")


def ocr_words(image, ocr: str | None, image_id: str | None) -> list[Word]:
    """Words of ``image``: none, RapidOCR (``auto``) or an annotation file."""
    if not ocr:
        return []
    if ocr == "auto":
        from rapidocr_onnxruntime import RapidOCR

        from textboost.ocr import words_from_rapidocr

        return words_from_rapidocr(RapidOCR()(image))  # a PIL image: RapidOCR converts to BGR
    from textboost.ocr import read_annotations

    return read_annotations(ocr, image_id)


def main(argv: list[str] | None = None) -> int:
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
    parser.add_argument("--t", type=float, default=800.0, help="average-character-area threshold")
    parser.add_argument("--side-info-format", default="compact", choices=["compact", "gzip"])
    args = parser.parse_args(argv)

    from textboost.checkpoint import load_checkpoint
    from textboost.codec import encode_image
    from textboost.container import describe
    from textboost.filtering import filter_words

    image = load_image(args.image)
    image_id = args.image_id or Path(args.image).stem
    words = ocr_words(image, args.ocr, image_id)
    kept, dropped = filter_words(words, args.t)
    model, _ = load_checkpoint(args.model)
    data = encode_image(model, image, kept, args.side_info_format)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_bytes(data)
    d = describe(data)
    print(
        f"{args.output}: {d['total_bytes']} bytes, {d['width']}x{d['height']}, "
        f"words kept {len(kept)}/{len(words)}\n"
        f"bpp total {d['bpp_total']:.5f} = image {d['bpp_image']:.5f} "
        f"+ side info {d['bpp_side_info']:.5f} + container {d['bpp_overhead']:.5f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
