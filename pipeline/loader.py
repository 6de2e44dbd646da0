"""WebDataset training loader: random crops of image, guidance map and text mask (paper 5.1.4).

Every reader (a DataLoader worker of a rank) takes every S-th shard of one endless sequence of
seeded per-round permutations of the shard list (S readers in all), reads each shard whole into
its shuffle buffer, and stops after ``steps_per_epoch`` batches, so all DDP ranks run the same
number of steps (docs/architecture.md "Known traps") and every shard is read equally often (within one
read) however the shard count divides among the readers. Samples that cannot be
decoded are skipped and counted by a webdataset handler; the count travels with each batch.

Shard sample fields (docs/architecture.md "Sample fields"): ``jpg`` | ``png``, ``ocr.json``, ``guide.png``, ``side.bin``,
``meta.json``. The crop window is cut identically from image, guidance map and text mask.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from textboost.errors import ShardError
from textboost.words import Word

log = logging.getLogger(__name__)

IMAGE_KEYS = ("jpg", "png")
MAX_CONSECUTIVE_FAILURES = 1000  # bad samples in a row before the loader gives up


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from any parts (stable across processes and machines)."""
    blob = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1


# ---------------------------------------------------------------- per-sample (pure) functions


@dataclass
class Crop:
    """One training crop: uint8 arrays, ``image`` SxSx3, ``guidance`` and ``text_mask`` SxS."""

    image: np.ndarray
    guidance: np.ndarray
    text_mask: np.ndarray
    key: str = ""
    cmap: np.ndarray | None = None  # SxSx3 uint8 colour guidance (model.fusion=colour)
    box: np.ndarray | None = None  # SxS uint8 {0, 1} word boxes of the colour guidance
    # model.kind=taco_style: the sent words meeting the window, as word tokens in crop
    # coordinates (``textboost.text_adapter.word_tokens``: chars nxL uint8, boxes nx4)
    text: tuple[np.ndarray, np.ndarray] | None = None


def decode_sample(sample: dict) -> tuple[np.ndarray, np.ndarray, list[Word]]:
    """Shard sample -> (image HxWx3 uint8, guidance map HxW uint8, words). Raises ``ShardError``."""
    key = sample.get("__key__", "?")
    data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
    if data is None:
        raise ShardError(f"sample {key}: no jpg/png field (fields: {sorted(sample)})")
    for name in ("guide.png", "ocr.json"):
        if name not in sample:
            raise ShardError(f"sample {key}: missing field {name}; rebuild the shard")
    try:
        with Image.open(io.BytesIO(data)) as img:
            image = np.asarray(img.convert("RGB"))
        with Image.open(io.BytesIO(sample["guide.png"])) as img:
            guidance = np.asarray(img.convert("L"))
        ocr = json.loads(sample["ocr.json"])
        words = [Word.from_json(w) for w in ocr.get("words", [])]
    except (OSError, ValueError, KeyError, TypeError, SyntaxError) as exc:
        raise ShardError(f"sample {key}: cannot decode ({exc})") from exc
    if guidance.shape != image.shape[:2]:
        raise ShardError(
            f"sample {key}: guide.png is {guidance.shape[::-1]} but the image is "
            f"{image.shape[1::-1]}; rebuild the shard"
        )
    return image, guidance, words


def text_mask(words: list[Word], height: int, width: int) -> np.ndarray:
    """Binary mask (uint8 {0,1}) of the word polygons for L_gc (paper 4.3, Eq. 6)."""
    from textboost.guidance import render_text_mask

    return np.asarray(render_text_mask(words, height, width), dtype=np.uint8)


def crop_origin(
    h: int, w: int, words: list[Word], size: int, rng: random.Random, text_prob: float = 0.0
) -> tuple[int, int]:
    """Top-left ``(y0, x0)`` of a training window: uniform, or (with probability
    ``text_prob``, when the image has words) centred on a random word with a jitter of up to a
    quarter window, so stage 2 sees the sent words it must learn to draw."""
    if words and text_prob > 0 and rng.random() < text_prob:
        word = words[rng.randrange(len(words))]
        cx = sum(x for x, _ in word.polygon) / len(word.polygon)
        cy = sum(y for _, y in word.polygon) / len(word.polygon)
        jitter = size / 4
        y0 = round(cy - size / 2 + rng.uniform(-jitter, jitter))
        x0 = round(cx - size / 2 + rng.uniform(-jitter, jitter))
        return min(max(y0, 0), max(h - size, 0)), min(max(x0, 0), max(w - size, 0))
    return rng.randint(0, max(h - size, 0)), rng.randint(0, max(w - size, 0))


def _in_window(words: list[Word], x0: int, y0: int, size: int) -> list[Word]:
    """Words whose bounding box meets the window."""
    out = []
    for wd in words:
        xs, ys = [x for x, _ in wd.polygon], [y for _, y in wd.polygon]
        if max(xs) >= x0 and min(xs) < x0 + size and max(ys) >= y0 and min(ys) < y0 + size:
            out.append(wd)
    return out


def random_crop(
    image: np.ndarray,
    guidance: np.ndarray,
    words: list[Word],
    size: int,
    rng: random.Random,
    with_mask: bool = True,
    text_prob: float = 0.0,
    with_colour: bool = False,
    with_text: bool = False,
) -> Crop:
    """Cut the same ``size``x``size`` window from image, guidance map and text mask (and,
    ``with_colour``, the colour guidance: word colours measured on the whole image, as the
    encoder does, for the words that meet the window; ``with_text``, those words' tokens for
    a TACO-style encoder, boxes in crop coordinates).

    Images smaller than the crop are zero-padded at the bottom/right (the guidance map and
    mask too, so they stay aligned). The mask is rendered only inside the window.
    """
    h, w = image.shape[:2]
    y0, x0 = crop_origin(h, w, words, size, rng, text_prob)
    ch, cw = min(size, h), min(size, w)
    out_img = np.zeros((size, size, 3), np.uint8)
    out_guide = np.zeros((size, size), np.uint8)
    out_mask = np.zeros((size, size), np.uint8)
    out_img[:ch, :cw] = image[y0 : y0 + ch, x0 : x0 + cw]
    out_guide[:ch, :cw] = guidance[y0 : y0 + ch, x0 : x0 + cw]
    if with_mask and words:
        shifted = [
            Word(tuple((x - x0, y - y0) for x, y in wd.polygon), wd.text, wd.legible)
            for wd in words
        ]
        out_mask[:ch, :cw] = text_mask(shifted, ch, cw)
    crop = Crop(out_img, out_guide, out_mask)
    if with_colour:
        from textboost.colours import colour_guidance, word_colours

        near = _in_window(words, x0, y0, size)
        cmap, box = colour_guidance(out_guide, near, word_colours(image, near), (x0, y0))
        crop.cmap, crop.box = cmap, box
    if with_text:
        from textboost.text_adapter import word_tokens

        crop.text = word_tokens(_in_window(words, x0, y0, size), size, size, x0, y0)
    return crop


def collate(crops: list[Crop], skipped: int, worker: int) -> dict:
    """Stack crops into uint8 tensors (cheap to send between processes); see ``to_float``."""
    import torch

    out = {
        "image": torch.from_numpy(np.stack([c.image for c in crops])).permute(0, 3, 1, 2),
        "guidance": torch.from_numpy(np.stack([c.guidance for c in crops]))[:, None],
        "text_mask": torch.from_numpy(np.stack([c.text_mask for c in crops]))[:, None],
        "keys": [c.key for c in crops],
        "skipped": skipped,
        "worker": worker,
    }
    if crops and crops[0].cmap is not None:
        out["cmap"] = torch.from_numpy(np.stack([c.cmap for c in crops])).permute(0, 3, 1, 2)
        out["box"] = torch.from_numpy(np.stack([c.box for c in crops]))[:, None]
    if crops and crops[0].text is not None:
        from textboost.text_adapter import stack_tokens

        out["text"] = stack_tokens([c.text for c in crops])
    return out


def text_share(batch: dict) -> float:
    """Share of the batch's crops whose guidance map holds any glyph ink."""
    g = batch["guidance"]
    return float((g.flatten(1).amax(1) > 0).float().mean())


def to_float(batch: dict, device, non_blocking: bool = False) -> dict:
    """uint8 batch -> model inputs: image Bx3xSxS and guidance Bx1xSxS in [0,1], mask {0,1}."""
    out = {}
    for name in ("image", "guidance", "text_mask", "cmap", "box"):
        if name not in batch:
            continue
        t = batch[name].to(device, non_blocking=non_blocking).float()
        out[name] = t if name in ("text_mask", "box") else t / 255.0
    if "text" in batch:  # word tokens: ids, boxes and flags as they are
        out["text"] = {k: v.to(device, non_blocking=non_blocking) for k, v in batch["text"].items()}
    return out


# ---------------------------------------------------------------- the webdataset pipeline


class SkipCounter:
    """webdataset handler: log and count a bad sample or shard, then go on (never crash).

    Gives up with ``ShardError`` after ``MAX_CONSECUTIVE_FAILURES`` failures in a row, so a
    dataset with no readable sample cannot spin forever on resampled shards.
    """

    def __init__(self) -> None:
        self.count = 0
        self.consecutive = 0

    def __call__(self, exc: BaseException) -> bool:
        self.count += 1
        self.consecutive += 1
        if self.count <= 10:
            log.warning("skipping bad training sample: %s", exc)
        if self.consecutive >= MAX_CONSECUTIVE_FAILURES:
            raise ShardError(
                f"{self.consecutive} bad samples in a row (last: {exc}); check the shards "
                "with `textboost shards verify`"
            )
        return True

    def ok(self) -> None:
        self.consecutive = 0


@dataclass
class LoaderSpec:
    """Everything a rank needs to build its loader (plain data: picklable)."""

    urls: list[str]
    batch_size: int
    crop_size: int
    seed: int
    rank: int = 0
    world_size: int = 1
    num_workers: int = 1
    with_mask: bool = True
    with_colour: bool = False  # colour guidance (model.fusion=colour)
    with_text: bool = False  # word tokens of each crop (model.kind=taco_style)
    text_crop_prob: float = 0.0  # share of windows centred on a sent word
    shuffle_buffer: int = 1000  # train.shuffle_buffer
    pin_memory: bool = False  # for GPU training
    storage_options: dict = field(default_factory=dict)


def _worker_info() -> tuple[int, int]:
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def reader_shards(
    urls: list[str], rank: int, world: int, worker: int, workers: int, seed: int | str = 0
) -> Iterator[str]:
    """The endless shard sequence of one reader (``rank``'s DataLoader ``worker``).

    All ``world * workers`` readers share one sequence: round r is a permutation of ``urls``
    seeded by (``seed``, r), the rounds concatenated; reader s takes positions s, s + S,
    s + 2S, ... (S readers). Readers consume at the same rate, so over any stretch every
    shard is read the same number of times within one: 44 shards over 32 readers no longer
    draw some images 1.4x and others 0.7x per epoch. With fewer shards than readers every
    reader still gets shards (the sequence wraps), so no reader idles.
    """
    if not urls:
        raise ShardError("no training shards for this reader")
    slots, slot = world * workers, rank * workers + worker
    n = len(urls)
    position = slot
    order: list[str] = []
    current = -1
    while True:
        r, i = divmod(position, n)
        if r != current:
            order = list(urls)
            random.Random(derive_seed(seed, "shard-round", r)).shuffle(order)
            current = r
        yield order[i]
        position += slots


def _crops(spec: LoaderSpec, epoch_tag: str) -> Iterator[dict]:
    """The per-worker sample stream: resampled shards -> samples -> crops -> batches."""
    import fsspec
    from webdataset.tariterators import group_by_keys, tar_file_expander

    worker, workers = _worker_info()
    rng = random.Random(derive_seed(spec.seed, epoch_tag, spec.rank, worker))
    shards = reader_shards(
        spec.urls, spec.rank, spec.world_size, worker, workers, f"{spec.seed}/{epoch_tag}"
    )
    handler = SkipCounter()

    def shard_stream() -> Iterator[dict]:
        for url in shards:  # endless; the epoch length is set by the loader
            try:
                with fsspec.open(url, "rb", **spec.storage_options) as stream:
                    yield {"url": url, "stream": stream}
            except OSError as exc:
                handler(ShardError(f"cannot open shard {url}: {exc}"))

    samples = group_by_keys(tar_file_expander(shard_stream(), handler=handler), handler=handler)
    buffer: list[dict] = []
    batch: list[Crop] = []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) < spec.shuffle_buffer:
            continue
        picked = buffer.pop(rng.randrange(len(buffer)))
        try:
            image, guidance, words = decode_sample(picked)
            crop = random_crop(
                image, guidance, words, spec.crop_size, rng, spec.with_mask,
                spec.text_crop_prob, spec.with_colour, spec.with_text,
            )  # fmt: skip
            crop.key = picked["__key__"]
        except ImportError:
            raise  # a broken install is not a bad sample
        except Exception as exc:  # noqa: BLE001 - any bad sample is skipped and counted
            handler(exc)
            continue
        handler.ok()
        batch.append(crop)
        if len(batch) == spec.batch_size:
            yield collate(batch, handler.count, worker)
            batch = []


def make_loader(spec: LoaderSpec, steps: int, epoch_tag: str | int = 0):
    """An iterable of exactly ``steps`` batches for this rank (a ``wds.WebLoader``).

    ``epoch_tag`` enters every seed: use the epoch number, plus the resume step when a run
    resumes mid-epoch, so each (seed, epoch, resume point, rank, worker) draws its own stream.
    """
    import webdataset as wds

    if not spec.urls:
        raise ShardError("no training shards: build them first with `textboost shards build`")
    dataset = wds.DataPipeline(lambda: _crops(spec, str(epoch_tag)))
    loader = wds.WebLoader(
        dataset,
        batch_size=None,
        num_workers=spec.num_workers,
        persistent_workers=False,
        pin_memory=spec.pin_memory,
        prefetch_factor=2 if spec.num_workers > 0 else None,
    )
    return loader.with_epoch(steps)


class SkipTally:
    """Running total of skipped samples across loader workers and epochs."""

    def __init__(self) -> None:
        self.done = 0
        self.current: dict[int, int] = {}

    def observe(self, batch: dict) -> int:
        self.current[batch["worker"]] = max(self.current.get(batch["worker"], 0), batch["skipped"])
        return self.total

    def end_epoch(self) -> None:
        self.done += sum(self.current.values())
        self.current = {}

    @property
    def total(self) -> int:
        return self.done + sum(self.current.values())


def shard_list(shards_url: str, split: str = "train") -> list[str]:
    """Shard URLs of ``split`` from the manifest under ``shards_url`` (helper: pipeline.shards)."""
    from pipeline.shards import shard_urls

    return list(shard_urls(shards_url, split))


def iter_samples(urls: list[str], storage_options: dict | None = None) -> Iterator[dict]:
    """Every sample (``__key__`` plus its fields' bytes) of the shards, in order, streamed: the
    training loader's tar reader without resampling, shuffling or cropping (the evaluation
    reads the val shards with it). A damaged shard raises ``ShardError``."""
    import fsspec
    from webdataset.tariterators import group_by_keys, tar_file_expander

    def streams() -> Iterator[dict]:
        for url in urls:
            with fsspec.open(url, "rb", **(storage_options or {})) as stream:
                yield {"url": url, "stream": stream}

    try:
        yield from group_by_keys(tar_file_expander(streams()))
    except (tarfile.TarError, ValueError) as exc:
        raise ShardError(
            f"cannot read shard: {exc}; check it with `textboost shards verify`"
        ) from None
