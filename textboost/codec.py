"""The TextBoost codec: image + OCR words -> ``.tbx`` bytes -> image (paper 4, Fig. 2).

Encoding: the (already filtered) words become side-info bytes; the image goes through the
backbone encoder and entropy coder. Decoding: side info -> words -> guidance map (rendered
exactly as in training); latent strings -> backbone decoder -> fusion block with the guidance
map -> image. Both run in eval mode under ``torch.inference_mode``; the entropy models' CDF
tables are refreshed (``update(force=True)``) whenever the weights changed. Same model, same
image and words => the same bytes (entropy decoding is only exact on the same device and
software stack as encoding: DESIGN known traps).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from textboost import container
from textboost.errors import ContainerError, ImageError, SideInfoError
from textboost.model import TextBoost, padding_for
from textboost.words import Word

MAX_DECODE_PIXELS = 1 << 25  # ~33.5 MP: refuse to allocate more for a (hostile) container


@contextlib.contextmanager
def _eval_mode(model: TextBoost) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> 1x3xHxW float tensor in [0, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # HxWx3
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """1x3xHxW tensor in [0, 1] -> PIL RGB image (rounded to 8 bits)."""
    arr = x[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")


def guidance_tensor(words: list[Word], height: int, width: int) -> torch.Tensor:
    """Rendered guidance map (paper 4.1) as a 1x1xHxW float tensor in [0, 1]."""
    from textboost.guidance import render_guidance

    g = render_guidance(words, height, width)  # HxW uint8, text white on black
    return torch.from_numpy(np.asarray(g, dtype=np.float32) / 255.0)[None, None]


def encode_image(
    model: TextBoost,
    image: Image.Image,
    words: Iterable[Word],
    side_info_format: str = "compact",
) -> bytes:
    """Encode ``image`` and its (filtered) OCR ``words`` into container bytes."""
    from textboost.side_info import encode_side_info

    width, height = image.size
    if not (1 <= width <= container.MAX_SIDE and 1 <= height <= container.MAX_SIDE):
        raise ImageError(f"image size {width}x{height} outside 1..{container.MAX_SIDE} pixels")
    words = list(words)
    side_info = encode_side_info(words, (width, height), side_info_format)
    colour_block = b""
    if model.needs_colour and words:
        from textboost import colours
        from textboost.side_info import decode_side_info

        sent = decode_side_info(side_info)  # the words exactly as the decoder will see them
        colour_block = colours.pack(colours.word_colours(np.asarray(image.convert("RGB")), sent))
    x = image_to_tensor(image).to(_device(model))
    model.ensure_updated()  # outside inference_mode: CDF buffers stay ordinary tensors
    with torch.inference_mode(), _eval_mode(model):
        out = model.compress(x)
    strings = [[bytes(s) for s in ss] for ss in out["strings"]]
    c = container.Container(
        model.identity(), width, height, out["padding"], side_info, strings, colour_block
    )
    return container.pack(c)


def fusion_inputs(
    model: TextBoost, words: list[Word], colour_block: bytes, height: int, width: int
) -> dict:
    """What the fusion block takes, as the decoder renders it: ``guidance`` (1x1xHxW) and,
    for the colour block, ``cmap`` (1x3xHxW in [0, 1]) and ``box`` (1x1xHxW)."""
    from textboost.guidance import render_guidance

    g = render_guidance(words, height, width)  # HxW uint8, text white on black
    out = {"guidance": torch.from_numpy(np.asarray(g, dtype=np.float32) / 255.0)[None, None]}
    if model.needs_colour:
        from textboost import colours

        if words and not colour_block:
            raise ContainerError(
                "the container has no colour block but the model's fusion block needs the "
                "word colours: it was not written by this model"
            )
        table = colours.unpack(colour_block, len(words))
        cmap, box = colours.colour_guidance(g, words, table)
        out["cmap"] = torch.from_numpy(cmap.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        out["box"] = torch.from_numpy(box.astype(np.float32))[None, None]
    return out


def decode_container(
    model: TextBoost, data: bytes, max_pixels: int = MAX_DECODE_PIXELS
) -> Image.Image:
    """Decode container bytes with ``model``; any bad or foreign input -> ``ContainerError``."""
    c = container.unpack(data)
    _check_compatible(model, c, max_pixels)
    words = decode_words(c)
    inputs = fusion_inputs(model, words, c.colours, c.height, c.width)
    shape = model.latent_shape(c.height + c.padding[2] + c.padding[3], c.width + sum(c.padding[:2]))
    model.ensure_updated()
    with torch.inference_mode(), _eval_mode(model):
        try:
            out = model.decompress(c.strings, shape, **inputs)
        except (RuntimeError, ValueError, AssertionError, IndexError, OverflowError) as exc:
            raise ContainerError(f"latent strings could not be entropy-decoded: {exc}") from None
    return tensor_to_image(out["x_hat"])


def decode_words(c: container.Container) -> list[Word]:
    """The words carried by a container's side-info block (checked against its image size)."""
    from textboost.side_info import decode_side_info_full

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
            f"{max_pixels} (raise max_pixels if the file is trusted)"
        )
    if tuple(c.padding) != padding_for(c.height, c.width):
        raise ContainerError(
            f"container padding {c.padding} does not match image size {c.width}x{c.height}"
        )
    if len(c.strings) != model.num_string_lists or any(len(ss) != 1 for ss in c.strings):
        raise ContainerError(
            f"container holds {len(c.strings)} latent string lists, the model expects "
            f"{model.num_string_lists} with one string each"
        )


def _device(model: TextBoost) -> torch.device:
    return next(model.parameters()).device
