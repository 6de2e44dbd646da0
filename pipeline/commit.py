"""Commit protocol of shard folders: atomic writes, then the shard's stats JSON as its marker.

A tar is written under a temporary name and renamed; its marker (``<name>.json``, the shard's
stats) is written last (docs/architecture.md "Dataset layout"). JSON members and markers are
canonical (``dumps``).
"""

from __future__ import annotations

import io
import shutil
import uuid
from collections.abc import Callable

import fsspec

from pipeline import faults
from textboost.canonical import canonical_json


def dumps(obj: object) -> bytes:
    """The JSON of shard members and markers: canonical, UTF-8 (same object, same bytes)."""
    return canonical_json(obj, ensure_ascii=False)


def write_atomic(
    fs: fsspec.AbstractFileSystem,
    path: str,
    src: io.IOBase | bytes,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write under a temporary name, then rename: readers never see a partial file.

    ``before_rename`` runs between the two (the fault-injection hook of the shard tests).
    """
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with fs.open(tmp, "wb") as f:
        if isinstance(src, bytes):
            f.write(src)
        else:
            shutil.copyfileobj(src, f, 1 << 20)
    if before_rename is not None:
        before_rename()
    fs.mv(tmp, path)


def commit_shard(
    out: str, name: str, tar_src: io.IOBase | bytes, stats: dict, fault_marker: str = ""
) -> None:
    """Write the tar (temp name + rename), then the stats JSON: the commit marker.

    A marker that says something else is removed first, so a tar is never paired with
    another build's marker; an identical one (a retried or duplicate task) is left alone.
    """
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    marker, new_marker = f"{root}/{name}.json", dumps(stats) + b"\n"
    try:
        old_marker = fs.cat_file(marker)
    except FileNotFoundError:
        old_marker = None
    if old_marker not in (None, new_marker):
        fs.rm(marker)
    # the fault hook dies between the temp write and the rename
    write_atomic(fs, f"{root}/{name}.tar", tar_src, lambda: faults.crash_once(fault_marker))
    if old_marker != new_marker:
        write_atomic(fs, marker, new_marker)
