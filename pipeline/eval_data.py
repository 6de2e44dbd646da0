"""Evaluation inputs (``pipeline.evaluation``): the images of ``eval.dataset`` as ``EvalItem``
references, each read into a ``Sample`` (image, ground truth, side-info words) inside its task,
and ``SampleResult``, what one image under one model yields."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image

from textboost.config import SourceConfig, TextBoostConfig
from textboost.text.words import Word


@dataclass
class Sample:
    key: str
    image: Image.Image
    gt: list[Word] | None  # None: the dataset has no ground truth (F1 not available)
    side_words: list[Word] = field(default_factory=list)  # filtered side-info words
    candidates: list[Word] = field(default_factory=list)  # before filtering (eval.model_t_test)


@dataclass
class SampleResult:
    """One image under one model (``eval_image.evaluate_sample``): the rows (one per method)
    and what its crop panel shows: the reconstructions by method, the container, the
    decoder's guidance map (HxW uint8), the words sent (or read by a baseline's encoder) and
    the codec timings."""

    rows: list[dict]
    recon: dict[str, Image.Image]
    container: bytes
    guidance: object  # numpy HxW uint8
    words: list[Word]
    timing: dict[str, float]


# ---------------------------------------------------------------- inputs


def eval_source(cfg: TextBoostConfig) -> SourceConfig:
    """The dataset section with ``eval.limit`` applied; ground truth always from annotations."""
    src = copy.deepcopy(cfg.eval.dataset)
    if cfg.eval.limit > 0:
        src.limit = cfg.eval.limit
    if src.kind != "folder":
        src.ocr = "annotations"
    if src.kind == "shards" and not src.images:
        src.images = cfg.shards.out
    return src


@dataclass(frozen=True)
class EvalItem:
    """One image to evaluate: a source reference (the task reads it) or a shard sample's
    fields; ``fingerprint`` changes whenever the image's inputs change (row keys)."""

    index: int  # position in the listing: the order of every output
    key: str
    fingerprint: str
    ref: object | None = None  # pipeline.sources.SampleRef
    fields: dict | None = None  # shard sample: field name -> bytes


def list_items(cfg: TextBoostConfig) -> tuple[Iterator[EvalItem], int]:
    """The images of ``eval.dataset`` (``eval.limit`` applied), lazily, and how many."""
    src = eval_source(cfg)
    if src.kind == "shards":
        from pipeline.loader import iter_samples
        from pipeline.shards import read_manifest, shard_urls

        count = int(read_manifest(src.images)["splits"].get("val", {}).get("count", 0))
        urls = shard_urls(src.images, "val")
        count = min(count, src.limit) if src.limit > 0 else count

        def from_shards() -> Iterator[EvalItem]:
            for i, sample in enumerate(iter_samples(urls)):
                if i >= count:
                    return
                h = hashlib.sha256()
                for name in sorted(k for k in sample if not k.startswith("__")):
                    h.update(name.encode() + b"\0" + sample[name] + b"\0")
                key = sample["__key__"]
                fields = {k: v for k, v in sample.items() if not k.startswith("__")}
                yield EvalItem(i, key, f"shard\t{key}\t{h.hexdigest()[:32]}", fields=fields)

        return from_shards(), count
    from pipeline.sources import list_source

    refs = list_source(src, "val", cfg.data.synth)
    items = (EvalItem(i, r.key, r.fingerprint(), ref=r) for i, r in enumerate(refs))
    return items, len(refs)


def threshold(cfg: TextBoostConfig) -> float:
    """The evaluation's side-info threshold: ``eval.t_test``, else the val split's T_test."""
    from pipeline.shards import sample_spec

    spec = sample_spec(cfg, "val")  # T_test, as the val shards (or eval.t_test)
    return cfg.eval.t_test if cfg.eval.t_test > 0 else spec.threshold


def prepare_sample(item: EvalItem, cfg: TextBoostConfig) -> Sample:
    """The decoded image, its ground truth and its filtered side-info words; a bad input
    raises ``TextBoostError`` (or ``FileNotFoundError``): a reject."""
    from pipeline.image_io import decode_image
    from pipeline.sample_words import annotation_words, ocr_words
    from pipeline.samples import load_input
    from pipeline.shards import sample_spec
    from textboost.errors import ShardError
    from textboost.text.filtering import filter_words

    if item.fields is not None:
        data = next((item.fields[k] for k in ("jpg", "png") if k in item.fields), None)
        if data is None or "ocr.json" not in item.fields:
            raise ShardError(f"sample {item.key}: no image or no ocr.json; rebuild the shard")
        try:
            words = [Word.from_json(w) for w in json.loads(item.fields["ocr.json"])["words"]]
            meta = json.loads(item.fields.get("meta.json", b"{}"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ShardError(f"sample {item.key}: bad ocr.json or meta.json ({exc})") from None
        gt = None if meta.get("words_from") == "none" else words
    else:
        data, words = load_input(item.ref, sample_spec(cfg, "val"))
        gt = None
    image = decode_image(data, full=True)[0].convert("RGB")
    if item.ref is not None:
        gt = words if words is not None else annotation_words(item.ref, item.ref.image)
    side = (gt or []) if cfg.eval.ocr == "annotations" else ocr_words(image)
    kept, _ = filter_words(side, threshold(cfg))
    return Sample(item.key, image, gt, kept, list(side))


# ---------------------------------------------------------------- one image
