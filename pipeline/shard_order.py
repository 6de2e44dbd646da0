"""Which references share a shard: ``shards.order=mixed`` spreads every class over all shards."""

from __future__ import annotations

import hashlib

from pipeline.sources import SampleRef

ORDER_SALT = "textboost-shards/mixed/1"  # the seeded hash of shards.order=mixed


def group_of(ref: SampleRef) -> str:
    """The class of a reference for mixing: the ImageNet synset (id prefix), else the folder
    (or tar) its image lives in; synthetic samples are one group."""
    if ref.source == "imagenet":
        return ref.id.split("_", 1)[0]
    if ref.offset >= 0:
        return ref.image
    return ref.image.rsplit("/", 1)[0] if ref.image else ref.source


def mixed_order(refs: list[SampleRef]) -> list[SampleRef]:
    """``refs`` reordered so every class is spread evenly over the whole sequence.

    Each key gets two numbers from a salted hash (``ORDER_SALT``): ``h`` orders a class's n
    references, and the i-th of them gets the position (i + u) / n, u in [0, 1). All
    references are sorted by position (then ``h``). Any run of k consecutive references then
    holds about k * n / N of each class, so every shard mixes classes in proportion, tail
    shards included. Deterministic: a function of the keys and classes only (not of the
    input order, the machine or the worker count). Vectorised: 1.28 M references in seconds.
    """
    import numpy as np

    n = len(refs)
    if n == 0:
        return []
    salt = ORDER_SALT.encode() + b"/"
    digests = b"".join(
        hashlib.blake2b(salt + r.key.encode(), digest_size=16).digest() for r in refs
    )
    raw = np.frombuffer(digests, dtype="<u8").reshape(n, 2)
    h, u = raw[:, 0], raw[:, 1].astype(np.float64) / 2.0**64
    codes: dict[str, int] = {}
    group = np.fromiter((codes.setdefault(group_of(r), len(codes)) for r in refs), np.int64, n)
    counts = np.bincount(group)
    by_class = np.lexsort((h, group))  # class by class, each in h order
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, np.int64)
    rank[by_class] = np.arange(n) - starts[group[by_class]]
    position = (rank + u) / counts[group]
    return [refs[i] for i in np.lexsort((h, position))]
