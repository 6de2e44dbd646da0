"""WebDataset training loader: aligned crops, padding, equal batch counts, bad samples skipped."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from pipeline.crops import decode_sample, random_crop, text_mask
from pipeline.loader import LoaderSpec, SkipTally, derive_seed, make_loader, reader_shards
from textboost.errors import ShardError
from textboost.text.words import Word

torch.set_num_threads(1)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def make_sample(key: str, h: int, w: int, box: tuple[int, int, int, int]) -> dict:
    """A sample whose pixels encode their coordinates: R = x, G = y (mod 256), B = 255 inside
    the word box; the guidance map is (x + y) mod 256. Alignment is then checkable per pixel."""
    ys, xs = np.mgrid[0:h, 0:w]
    x0, y0, x1, y1 = box
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    image = np.stack([xs % 256, ys % 256, np.where(inside, 255, 0)], axis=-1).astype(np.uint8)
    guide = ((xs + ys) % 256).astype(np.uint8)
    word = Word(((x0, y0), (x1, y0), (x1, y1), (x0, y1)), "word")
    ocr = {"width": w, "height": h, "words": [word.to_json()]}
    return {
        "__key__": key,
        "png": _png(image),
        "ocr.json": json.dumps(ocr).encode(),
        "guide.png": _png(guide),
        "side.bin": b"\x00",
        "meta.json": b"{}",
    }


def write_shard(path, samples: list[dict]) -> str:
    with wds.TarWriter(str(path)) as sink:
        for s in samples:
            sink.write(s)
    return str(path)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    """Four shards of 3 samples (sizes 40..100 px, some smaller than the 64 px crop)."""
    root = tmp_path_factory.mktemp("shards")
    rng = random.Random(0)
    urls = []
    for i in range(4):
        samples = []
        for j in range(3):
            h, w = rng.randint(40, 100), rng.randint(40, 100)
            x0, y0 = rng.randint(0, w // 2), rng.randint(0, h // 2)
            samples.append(make_sample(f"synthetic_{i}_{j}", h, w, (x0, y0, x0 + 12, y0 + 8)))
        urls.append(write_shard(root / f"train-{i:06d}.tar", samples))
    return urls


def _check_alignment(batch: dict) -> None:
    img = batch["image"].numpy().astype(np.int64)  # Bx3xSxS
    guide = batch["guidance"].numpy()[:, 0].astype(np.int64)
    mask = batch["text_mask"].numpy()[:, 0]
    valid = img.sum(axis=1) > 0  # padding is all zeros (and pixel (0, 0) is black too)
    assert np.array_equal(
        np.where(valid, (img[:, 0] + img[:, 1]) % 256, 0), np.where(valid, guide, 0)
    )
    # the text mask is the word box, which the image's blue channel marks
    assert np.array_equal(mask.astype(bool), img[:, 2] == 255)


def test_crop_cuts_the_same_window_and_pads_small_images():
    sample = make_sample("synthetic_a", 50, 90, (60, 10, 80, 30))
    image, guidance, words = decode_sample(sample)
    crop = random_crop(image, guidance, words, 64, random.Random(1))
    assert crop.image.shape == (64, 64, 3) and crop.guidance.shape == (64, 64)
    assert not crop.image[50:].any() and not crop.guidance[50:].any()  # padded rows
    batch = {
        "image": torch.from_numpy(crop.image).permute(2, 0, 1)[None],
        "guidance": torch.from_numpy(crop.guidance)[None, None],
        "text_mask": torch.from_numpy(crop.text_mask)[None, None],
    }
    _check_alignment(batch)
    # the mask rendered inside the window equals the window of the full-image mask
    full = text_mask(words, 50, 90)
    x0 = int(crop.image[0, 0, 0])  # R channel encodes x
    assert np.array_equal(crop.text_mask[:50, :64], full[:, x0 : x0 + 64])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("png"), "no jpg/png"),
        (lambda s: s.pop("guide.png"), "missing field guide.png"),
        (lambda s: s.update({"png": b"not an image"}), "cannot decode"),
        (lambda s: s.update({"ocr.json": b"{bad json"}), "cannot decode"),
        (lambda s: s.update({"guide.png": _png(np.zeros((5, 5), np.uint8))}), "guide.png is"),
    ],
)
def test_bad_samples_raise_shard_error(change, message):
    sample = make_sample("synthetic_b", 30, 30, (1, 1, 5, 5))
    change(sample)
    with pytest.raises(ShardError, match=message):
        decode_sample(sample)


def _reads(urls: list[str], world: int, workers: int, per_reader: int, seed=0) -> dict:
    """How often each shard is read when every reader takes its next ``per_reader`` shards."""
    from collections import Counter
    from itertools import islice

    counts = Counter({u: 0 for u in urls})
    for r in range(world):
        for w in range(workers):
            counts.update(islice(reader_shards(urls, r, world, w, workers, seed), per_reader))
    return counts


def test_reader_shards_read_every_shard_equally():
    urls = [f"s{i}" for i in range(44)]  # stage 2 at paper scale: 44 shards, 8 ranks x 4 workers
    for per_reader in (1, 2, 5, 11, 30):
        counts = _reads(urls, 8, 4, per_reader)
        assert sum(counts.values()) == 32 * per_reader
        assert max(counts.values()) - min(counts.values()) <= 1, (per_reader, counts)
    assert set(_reads(urls, 8, 4, 11).values()) == {8}  # 352 reads = 8 full rounds
    # the old split (a fixed slice per reader, resampled) read 12 of 44 shards 2x as often:
    # slices of 1 or 2 shards, drawn at the same rate
    slices = [urls[r::8][w::4] for r in range(8) for w in range(4)]
    assert sorted({len(s) for s in slices}) == [1, 2]
    # same seed: the same sequence; another seed (epoch): another order
    from itertools import islice

    mine = list(islice(reader_shards(urls, 1, 8, 2, 4, 7), 20))
    assert mine == list(islice(reader_shards(urls, 1, 8, 2, 4, 7), 20))
    assert mine != list(islice(reader_shards(urls, 1, 8, 2, 4, 8), 20))
    one = list(islice(reader_shards(urls[:1], 1, 2, 1, 2), 3))
    assert one == urls[:1] * 3  # fewer shards than readers: every reader still reads
    with pytest.raises(ShardError):
        next(reader_shards([], 0, 1, 0, 1))


def test_every_sample_is_drawn_equally_per_epoch(shards):
    """4 shards of 3 samples over 3 readers (3 ranks): over an epoch each sample is drawn
    the same number of times (the old fixed slices gave ranks 2, 1 and 1 shards)."""
    from collections import Counter

    drawn: Counter = Counter()
    for rank in range(3):
        spec = LoaderSpec(shards, batch_size=3, crop_size=32, seed=1, rank=rank, world_size=3,
                          num_workers=0, with_mask=False, shuffle_buffer=1)  # fmt: skip
        for batch in make_loader(spec, steps=8, epoch_tag=0):
            drawn.update(batch["keys"])
    assert len(drawn) == 12 and set(drawn.values()) == {6}, drawn  # 24 shard reads, 6 rounds


@pytest.mark.parametrize("num_workers", [0, 2])
def test_every_rank_gets_the_same_batches_count_with_aligned_crops(shards, num_workers):
    keys_by_rank = []
    for rank in range(2):
        spec = LoaderSpec(shards, batch_size=2, crop_size=64, seed=3, rank=rank, world_size=2,
                          num_workers=num_workers, shuffle_buffer=2)  # fmt: skip
        batches = list(make_loader(spec, steps=5, epoch_tag=0))
        assert len(batches) == 5
        for b in batches:
            assert b["image"].shape == (2, 3, 64, 64) and b["image"].dtype == torch.uint8
            assert b["guidance"].shape == b["text_mask"].shape == (2, 1, 64, 64)
            _check_alignment(b)
        keys_by_rank.append({k for b in batches for k in b["keys"]})
    shard_of = lambda key: key.split("_")[1]  # noqa: E731
    assert keys_by_rank[0] != keys_by_rank[1]  # ranks draw their own streams
    assert {shard_of(k) for keys in keys_by_rank for k in keys} == {"0", "1", "2", "3"}


def test_same_seed_same_batches_other_epoch_other_batches(shards):
    spec = LoaderSpec(shards, batch_size=2, crop_size=32, seed=7, num_workers=0, with_mask=False)
    a = [b["image"] for b in make_loader(spec, 3, epoch_tag=1)]
    b = [b["image"] for b in make_loader(spec, 3, epoch_tag=1)]
    c = [b["image"] for b in make_loader(spec, 3, epoch_tag=2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert derive_seed(1, "a") == derive_seed(1, "a") != derive_seed(1, "b")


def test_bad_samples_and_shards_are_skipped_and_counted(shards, tmp_path):
    good = make_sample("synthetic_g", 64, 64, (2, 2, 10, 10))
    broken = make_sample("synthetic_x", 64, 64, (2, 2, 10, 10))
    broken["png"] = b"garbage"
    mixed = write_shard(tmp_path / "mixed.tar", [good, broken])
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(open(shards[0], "rb").read()[:700])
    spec = LoaderSpec([mixed, str(truncated), str(tmp_path / "missing.tar")], batch_size=2,
                      crop_size=32, seed=0, num_workers=1, shuffle_buffer=1)  # fmt: skip
    tally = SkipTally()
    batches = list(make_loader(spec, steps=4))
    assert len(batches) == 4
    for b in batches:
        tally.observe(b)
        assert set(b["keys"]) == {"synthetic_g"}
    assert tally.total >= 3  # broken sample, truncated shard and missing shard, at least


def test_no_readable_sample_fails_with_a_clear_error(tmp_path):
    bad = make_sample("synthetic_x", 16, 16, (1, 1, 4, 4))
    bad["png"] = b"garbage"
    spec = LoaderSpec([write_shard(tmp_path / "bad.tar", [bad])], 1, 16, 0, num_workers=0)
    with pytest.raises(ShardError, match="bad samples in a row"):
        next(iter(make_loader(spec, steps=1)))
    with pytest.raises(ShardError, match="no training shards"):
        make_loader(LoaderSpec([], 1, 16, 0), steps=1)
