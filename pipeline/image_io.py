"""Input images of a shard task: ranged reads, the format by magic bytes, a checked decode."""

from __future__ import annotations

import io
import warnings

import fsspec
from PIL import Image

from pipeline.png import PNG_MAGIC
from textboost.errors import ImageError

JPEG_MAGIC = b"\xff\xd8\xff"


def read_range(url: str, offset: int = -1, size: int = -1) -> bytes:
    """Whole file, or ``size`` bytes at ``offset`` (an image inside a tar)."""
    fs, path = fsspec.core.url_to_fs(url)
    if offset < 0:
        return fs.cat_file(path)
    data = fs.cat_file(path, start=offset, end=offset + size)
    if len(data) != size:
        raise ImageError(f"{url}: tar member at byte {offset} is truncated")
    return data


def image_format(data: bytes) -> str:
    """``jpg`` or ``png`` from the magic bytes (the file extension is not trusted)."""
    if data.startswith(JPEG_MAGIC):
        return "jpg"
    if data.startswith(PNG_MAGIC):
        return "png"
    raise ImageError(
        f"unsupported image format (first bytes {data[:8]!r}); shards keep original JPEG "
        "or PNG bytes only, convert the file to one of them"
    )


def decode_image(data: bytes, full: bool) -> tuple[Image.Image, tuple[int, int]]:
    """Decode enough to catch corrupt or truncated files; ``full`` for pixel access.

    Returns the image (reduced by DCT scaling unless ``full``) and its stored size (W, H);
    EXIF orientation is not applied: annotations refer to the stored pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            size = im.size
            if not full and im.format == "JPEG":
                # DCT scaling still walks the whole entropy-coded stream (catches
                # truncation) at a fraction of the cost of a full decode.
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"cannot decode image: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: {exc}") from None
    return im, size
