"""The TextBoost codec: image + OCR words -> ``.tbx`` bytes -> image (paper 4, Fig. 2).

Encoding: the (already filtered) words become side-info bytes; the image goes through the
backbone encoder and entropy coder. Decoding: side info -> words -> guidance map (rendered
exactly as in training); latent strings -> backbone decoder -> fusion block with the guidance
map -> image. Both run in eval mode under ``torch.inference_mode``; the entropy models' CDF
tables are refreshed (``update(force=True)``) whenever the weights changed. Same model, same
image and words => the same bytes (entropy decoding is only exact on the same device and
software stack as encoding: docs/architecture.md "Known traps").
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from textboost.codec import container
from textboost.errors import ContainerError, ImageError, SideInfoError
from textboost.model import TextBoost
from textboost.model.padding import padding_for
from textboost.text.words import Word

MAX_PIXELS = container.MAX_PIXELS  # ~33.5 MP: default limit on both sides (--max-pixels)
MAX_DECODE_PIXELS = MAX_PIXELS  # refuse to allocate more for a (hostile) container

# compressai's rANS decoder (``RansDecoder.decode_with_indexes``, C++) reads 32-bit words from
# the string without checking its length (docs/architecture.md "Known traps"): an empty or short string
# with a valid container checksum made it read past the end and crash the process. Every
# string the encoder writes is whole words and holds at least the flushed 64-bit state, and
# the decoder reads exactly the words the encoder wrote; so before decoding, strings are
# checked against that floor and against the most a valid string for the latent shape can
# hold, and each is followed by a guard of padding words that a valid string never reaches.
RANS_WORD_BYTES = 4
RANS_MIN_BYTES = 8  # the flushed 64-bit rANS state
RANS_MAX_BYTES_PER_SYMBOL = 8  # <= 16 bits per symbol + 36 bits of bypass coding (int32)
# Guard word 0x80000000: every read leaves the 64-bit state >= 2**31 (the decoder then reads
# at most one word per symbol and one per 8 bypass nibbles) and its low nibbles are 0 (a run
# of bypass-length nibbles ends at once). Guard length per string: one word per symbol, 16
# per word of the string (a hostile string of all-ones nibbles asks for up to 15 x 8 bypass
# nibbles per word, read at 8 a word) and a constant slack. Measured: no signal in thousands
# of hostile strings (tests/container_fuzz.py).
_GUARD_WORD = (0x80000000).to_bytes(RANS_WORD_BYTES, "little")
_GUARD_WORDS_PER_STRING_WORD = 16
_GUARD_SLACK_WORDS = 1 << 14


@contextlib.contextmanager
def _eval_mode(model: TextBoost) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_PIL_LIMIT_LOCK = threading.Lock()


def to_rgb8(image: Image.Image, name: str = "image") -> Image.Image:
    """``image`` as 8-bit RGB with its range preserved. Pillow's ``convert("RGB")`` clips
    16-bit values to 255 (a 16-bit greyscale PNG became solid white): 16-bit greyscale
    (``I;16*``, and ``I`` with values in 0..65535, Pillow's mode for 16-bit files) is scaled
    to 8 bits instead; modes without a defined range (``F``, ``I`` beyond 0..65535) and modes
    Pillow cannot convert raise ``ImageError``."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        arr = np.asarray(image)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 0xFFFF):
            raise ImageError(
                f"{name}: 32-bit integer pixels (mode I) outside 0..65535 have no defined range; "
                "convert the image to 8 or 16 bits per channel first"
            )
        grey = ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)  # 0..65535 -> 0..255
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        raise ImageError(
            f"{name}: floating-point pixels (mode F) have no defined range; convert the image "
            "to 8 or 16 bits per channel first"
        )
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"{name}: image mode {mode} cannot be converted to RGB: {exc}") from None


def open_image(source, max_pixels: int = MAX_PIXELS, name: str | None = None) -> Image.Image:
    """An image file (path, fsspec URL or bytes) as 8-bit RGB (``to_rgb8``). Its size, read
    from the header, is checked against ``max_pixels`` before any pixel is decoded; anything
    unreadable or too large raises ``ImageError``."""
    import io

    import fsspec
    from PIL import UnidentifiedImageError

    if isinstance(source, bytes | bytearray | memoryview):
        label = name or "image bytes"
        opener = contextlib.nullcontext(io.BytesIO(bytes(source)))
    else:
        label = name or str(source)
        opener = fsspec.open(source, "rb")
    try:
        with opener as f:
            with _PIL_LIMIT_LOCK:  # our limit replaces Pillow's (a traceback from open())
                saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    image = Image.open(f)  # parses the header only
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{label}: {width}x{height} = {width * height} pixels, above the limit of "
                    f"{max_pixels} (pass a larger --max-pixels if the file is trusted)"
                )
            image.load()
    except FileNotFoundError:
        raise ImageError(f"image {label} does not exist; check the path") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"cannot read image {label}: {exc}") from None
    return to_rgb8(image, label)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> 1x3xHxW float tensor in [0, 1] (high-depth modes: ``to_rgb8``)."""
    arr = np.asarray(to_rgb8(image), dtype=np.float32) / 255.0  # HxWx3
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """1x3xHxW tensor in [0, 1] -> PIL RGB image (rounded to 8 bits)."""
    arr = x[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")


def guidance_tensor(words: list[Word], height: int, width: int) -> torch.Tensor:
    """Rendered guidance map (paper 4.1) as a 1x1xHxW float tensor in [0, 1]."""
    from textboost.text.guidance import render_guidance

    g = render_guidance(words, height, width)  # HxW uint8, text white on black
    return torch.from_numpy(np.asarray(g, dtype=np.float32) / 255.0)[None, None]


def encode_image(
    model: TextBoost,
    image: Image.Image,
    words: Iterable[Word],
    side_info_format: str = "compact",
    max_pixels: int = MAX_PIXELS,
    levels: list[float] | None = None,
) -> bytes:
    """Encode ``image`` and its (filtered) OCR ``words`` into container bytes. Images above
    ``max_pixels`` are refused: the decoder refuses them with the same default. ``levels``:
    each word's text-path strength (``textboost.text.strength``), None: full strength."""
    from textboost.text.side_info import encode_side_info_ordered

    width, height = image.size
    if not (1 <= width <= container.MAX_SIDE and 1 <= height <= container.MAX_SIDE):
        raise ImageError(f"image size {width}x{height} outside 1..{container.MAX_SIDE} pixels")
    if width * height > max_pixels:
        raise ImageError(
            f"image of {width}x{height} = {width * height} pixels is above the limit of "
            f"{max_pixels} (pass a larger --max-pixels; decode it with the same limit)"
        )
    words = list(words)
    enc = encoder_inputs(model, words, height, width)
    if model.kind != "textboost":  # the baselines' encoders read the words: nothing is sent
        words = []
    side_info, order = encode_side_info_ordered(words, (width, height), side_info_format)
    colour_block = b""
    if model.needs_colour and words:
        from textboost.text import colours

        sent_levels = [levels[i] for i in order] if levels else None
        colour_block = colours.colour_block(np.asarray(to_rgb8(image)), side_info, sent_levels)
    elif levels and any(level != 1.0 for level in levels):
        raise ValueError("strength levels need a colour model with words (model.fusion=colour)")
    x = image_to_tensor(image).to(_device(model))
    model.ensure_updated()  # outside inference_mode: CDF buffers stay ordinary tensors
    with torch.inference_mode(), _eval_mode(model):
        out = model.compress(x, **enc)
    strings = [[bytes(s) for s in ss] for ss in out["strings"]]
    c = container.Container(
        model.identity(), width, height, out["padding"], side_info, strings, colour_block
    )
    return container.pack(c)


def encoder_inputs(model: TextBoost, words: list[Word], height: int, width: int) -> dict:
    """What a baseline's encoder takes besides the image, from the (filtered) words:
    ``roi_mask`` (kind=roi: the filled word polygons, 1x1xHxW, as ``render_text_mask``
    builds the training mask), ``text`` (kind=taco_style: the word tokens); TextBoost: {}."""
    if model.encoder_input == "roi_mask":
        from textboost.text.guidance import render_text_mask

        mask = np.asarray(render_text_mask(words, height, width), dtype=np.float32)
        return {"roi_mask": torch.from_numpy(mask)[None, None]}
    if model.encoder_input == "text":
        from textboost.model.text_adapter import tokens_for_image

        return {"text": tokens_for_image(words, height, width)}
    return {}


def colour_maps(
    model: TextBoost, words: list[Word], colour_block: bytes, guidance: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The colour guidance map (HxWx3 uint8) and box mask (HxW uint8) of a colour model's
    fusion block, from the container's colour block; None for a model without colour."""
    if not model.needs_colour:
        return None
    from textboost.text import colours

    if words and not colour_block:
        raise ContainerError(
            "the container has no colour block but the model's fusion block needs the "
            "word colours: it was not written by this model"
        )
    table = colours.unpack(colour_block, len(words))
    return colours.colour_guidance(guidance, words, table)


def fusion_inputs(
    model: TextBoost,
    words: list[Word],
    colour_block: bytes,
    height: int,
    width: int,
    guidance: np.ndarray | None = None,
    maps: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """What the fusion block takes, as the decoder renders it: ``guidance`` (1x1xHxW) and,
    for the colour block, ``cmap`` (1x3xHxW in [0, 1]) and ``box`` (1x1xHxW). ``guidance``
    and ``maps``: already rendered (``render_guidance``, ``colour_maps``)."""
    from textboost.text.guidance import render_guidance

    g = render_guidance(words, height, width) if guidance is None else guidance  # HxW uint8
    out = {"guidance": torch.from_numpy(np.asarray(g, dtype=np.float32) / 255.0)[None, None]}
    if maps is None:
        maps = colour_maps(model, words, colour_block, g)
    if maps is not None:
        cmap, box = maps
        out["cmap"] = torch.from_numpy(cmap.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        out["box"] = torch.from_numpy(box.astype(np.float32))[None, None]
    return out


@dataclass
class Decoded:
    """Everything one decode of a container yields: the TextBoost image (``image``, what
    ``decode_container`` returns), the backbone's output from the same latents (``base``,
    ``textboost.codec.baselines.decode_backbone``), the side-info words, the guidance map (HxW uint8)
    and, for a colour model, the colour guidance map and box mask."""

    image: Image.Image
    base: Image.Image
    container: container.Container
    words: list[Word]
    guidance: np.ndarray
    maps: tuple[np.ndarray, np.ndarray] | None  # colour model: ``colour_maps``


def decode_container(
    model: TextBoost, data: bytes, max_pixels: int = MAX_DECODE_PIXELS
) -> Image.Image:
    """Decode container bytes with ``model``; any bad or foreign input -> ``ContainerError``."""
    return decode_full(model, data, max_pixels).image


def decode_full(model: TextBoost, data: bytes, max_pixels: int = MAX_DECODE_PIXELS) -> Decoded:
    """``decode_container`` keeping what it computed on the way (one entropy decode, one
    side-info decode): the evaluation scores TextBoost, the backbone and the overlay from it."""
    from textboost.text import strength
    from textboost.text.guidance import render_guidance

    c = container.unpack(data)
    _check_compatible(model, c, max_pixels)
    padded_h, padded_w = c.height + c.padding[2] + c.padding[3], c.width + sum(c.padding[:2])
    strings = guarded_strings(model, c.strings, padded_h, padded_w)
    words = decode_words(c)
    guidance = np.asarray(render_guidance(words, c.height, c.width))
    maps = colour_maps(model, words, c.colours, guidance)
    inputs = fusion_inputs(model, words, c.colours, c.height, c.width, guidance, maps)
    smap = strength.container_map(words, c.colours, c.height, c.width)
    inputs["strength"] = None if smap is None else torch.from_numpy(smap)[None, None]
    shape = model.latent_shape(padded_h, padded_w)
    model.ensure_updated()
    with torch.inference_mode(), _eval_mode(model):
        try:
            out = model.decompress(strings, shape, **inputs)
        except (RuntimeError, ValueError, AssertionError, IndexError, OverflowError) as exc:
            raise ContainerError(f"latent strings could not be entropy-decoded: {exc}") from None
    image, base = tensor_to_image(out["x_hat"]), tensor_to_image(out["x_base"])
    return Decoded(image, base, c, words, guidance, maps)


def string_symbols(model: TextBoost, padded_h: int, padded_w: int) -> int:
    """The most symbols one latent string codes for a padded ``padded_h`` x ``padded_w``
    image (an upper bound over the model's strings: y at 1/16, z at 1/64 resolution)."""
    from compressai.entropy_models import EntropyBottleneck

    h, w = padded_h // 16, padded_w // 16
    if model.model_cfg.backbone == "elic":  # per channel group, checkerboard halves
        y = max(model.backbone.groups) * h * ((w + 1) // 2)
    elif model.model_cfg.backbone == "tcm":  # per channel slice
        y = model.backbone.slice_channels * h * w
    else:
        y = model.model_cfg.M * h * w
    z_channels = [m.channels for m in model.modules() if isinstance(m, EntropyBottleneck)]
    z = max(z_channels, default=model.model_cfg.N) * (padded_h // 64) * (padded_w // 64)
    return max(y, z, 1)


def guarded_strings(
    model: TextBoost, strings: list[list[bytes]], padded_h: int, padded_w: int
) -> list[list[bytes]]:
    """``strings`` checked against what the latent shape allows and each followed by guard
    words, so that compressai's unchecked rANS decoder cannot read past its input (a valid
    string is never read into its guard: the decoded values are unchanged). A string below
    the floor or above the ceiling raises ``ContainerError``."""
    symbols = string_symbols(model, padded_h, padded_w)
    ceiling = RANS_MAX_BYTES_PER_SYMBOL * symbols + 2 * RANS_MIN_BYTES
    out = []
    for i, row in enumerate(strings):
        guarded = []
        for s in row:
            n = len(s)
            if n < RANS_MIN_BYTES or n % RANS_WORD_BYTES:
                raise ContainerError(
                    f"latent string {i} holds {n} bytes; an entropy-coded string is a whole "
                    f"number of {RANS_WORD_BYTES}-byte words, at least {RANS_MIN_BYTES} bytes: "
                    "the container is damaged or was not written by textboost"
                )
            if n > ceiling:
                raise ContainerError(
                    f"latent string {i} holds {n} bytes, more than any valid string for a "
                    f"{padded_w}x{padded_h} latent can ({ceiling}): the container is damaged"
                )
            words = n // RANS_WORD_BYTES
            guard = symbols + _GUARD_WORDS_PER_STRING_WORD * words + _GUARD_SLACK_WORDS
            guarded.append(bytes(s) + _GUARD_WORD * guard)
        out.append(guarded)
    return out


def decode_words(c: container.Container) -> list[Word]:
    """The words carried by a container's side-info block (checked against its image size)."""
    from textboost.text.side_info import decode_side_info_full

    try:
        info = decode_side_info_full(c.side_info)
    except SideInfoError as exc:
        raise ContainerError(f"damaged side-info block in container: {exc}") from None
    if (info.width, info.height) != (c.width, c.height):
        raise ContainerError(
            f"side info is for a {info.width}x{info.height} image, the container holds "
            f"{c.width}x{c.height}: the file is inconsistent"
        )
    return info.words


def _check_compatible(model: TextBoost, c: container.Container, max_pixels: int) -> None:
    mine = model.identity()
    if c.model_id != mine:
        raise ContainerError(
            f"container was encoded with model {c.model_id}, but the loaded model is {mine}: "
            "decode it with the checkpoint that encoded it"
        )
    if c.width * c.height > max_pixels:
        raise ContainerError(
            f"container declares {c.width}x{c.height} pixels, above the decode limit of "
            f"{max_pixels} (pass a larger --max-pixels if the file is trusted)"
        )
    if tuple(c.padding) != padding_for(c.height, c.width):
        raise ContainerError(
            f"container padding {c.padding} does not match image size {c.width}x{c.height}"
        )
    if c.colours and not model.needs_colour:
        raise ContainerError(
            "container carries word colours (format version 2), but the model's fusion block "
            "does not use them: it was not written by this model"
        )
    if len(c.strings) != model.num_string_lists or any(len(ss) != 1 for ss in c.strings):
        raise ContainerError(
            f"container holds {len(c.strings)} latent string lists, the model expects "
            f"{model.num_string_lists} with one string each"
        )


def _device(model: TextBoost) -> torch.device:
    return next(model.parameters()).device
