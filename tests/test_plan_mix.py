"""Shard plans mix classes (item 5): planning only (listing + cut), no Ray, no image reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.shard_order import group_of, mixed_order
from pipeline.shards import plan
from textboost.config import load_config
from textboost.errors import ConfigError

CLASSES = 20


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Path:
    """20 class folders of 6..25 files (unequal, as ImageNet's 732..1300); 320 in all."""
    root = tmp_path_factory.mktemp("imagenet")
    for c in range(CLASSES):
        folder = root / f"n{c:08d}"
        folder.mkdir()
        for i in range(6 + (c * 7) % 20 + (10 if c == 0 else 0)):
            (folder / f"n{c:08d}_{i}.JPEG").write_bytes(b"x")
    return root


def _cfg(root: Path, tmp_path: Path, *extra: str):
    return load_config(
        None,
        [
            "data.train.kind=imagenet",
            f"data.train.images={root}",
            "data.train.ocr=none",
            f"shards.out={tmp_path / 'out'}",
            "shards.executor=local",
            "shards.samples_per_shard=32",
            *extra,
        ],
    )


def _classes(task) -> set[str]:
    return {group_of(r) for r in task.refs}


def test_mixed_plan_puts_many_classes_in_every_shard(imagenet, tmp_path):
    tasks, refs = plan(_cfg(imagenet, tmp_path), "train")
    assert len(refs) == 320 and len({group_of(r) for r in refs}) == CLASSES
    assert len(tasks) == 10
    for task in tasks:
        assert len(_classes(task)) >= min(CLASSES, 10, len(task.refs)), (task.index, task.refs)
        keys = [r.key for r in task.refs]
        assert keys == sorted(keys)  # members stay sorted inside a shard
    planned = [r for t in tasks for r in t.refs]
    assert sorted(planned, key=lambda r: r.key) == refs  # a permutation: nothing lost or doubled
    assert [r.key for r in refs] == sorted(r.key for r in refs)  # fingerprint order unchanged
    # deterministic: the same plan from a shuffled listing order
    again = mixed_order(list(reversed(refs)))
    assert [r.key for r in again] == [r.key for r in mixed_order(refs)]


def test_sorted_order_is_the_old_plan(imagenet, tmp_path):
    tasks, refs = plan(_cfg(imagenet, tmp_path, "shards.order=sorted"), "train")
    assert [r for t in tasks for r in t.refs] == refs
    assert min(len(_classes(t)) for t in tasks) <= 2  # consecutive keys: one or two classes


def test_order_changes_the_config_hash_and_is_checked(imagenet, tmp_path):
    mixed, _ = plan(_cfg(imagenet, tmp_path), "train")
    old, _ = plan(_cfg(imagenet, tmp_path, "shards.order=sorted"), "train")
    assert mixed[0].config_hash != old[0].config_hash
    with pytest.raises(ConfigError, match=r"shards.order='random' is not allowed"):
        _cfg(imagenet, tmp_path, "shards.order=random")
    with pytest.raises(ConfigError, match="train.shuffle_buffer"):
        load_config(None, ["train.shuffle_buffer=0"])
