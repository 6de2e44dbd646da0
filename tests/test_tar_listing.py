"""ImageNet tar listing reads headers (or a sidecar index), never the image data (item 4).

``countfs://`` is a real fsspec filesystem over local files whose files are
``AbstractBufferedFile``s, like s3fs/gcsfs: the same block cache (default read-ahead of
``block_size``) and one ``_fetch_range`` per request. It counts the bytes fetched per path.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections import defaultdict
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile

from jobs import tar_index
from pipeline.sources import TAR_INDEX_SUFFIX, SampleRef, list_source
from textboost.config import SourceConfig
from textboost.errors import ConfigError

FETCHED: dict[str, int] = defaultdict(int)  # path -> bytes fetched
REQUESTS: dict[str, int] = defaultdict(int)


class CountingFile(AbstractBufferedFile):
    def _fetch_range(self, start: int, end: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read(end - start)
        FETCHED[self.path] += len(data)
        REQUESTS[self.path] += 1
        return data


class CountingFS(LocalFileSystem):
    protocol = "countfs"
    cachable = False

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        return super()._strip_protocol(path[len("countfs://") :] if "://" in path else path)

    def _open(self, path, mode="rb", block_size=None, cache_type="readahead", **kwargs):
        if "r" not in mode:
            return super()._open(path, mode, block_size=block_size, **kwargs)
        size = self.size(path)
        return CountingFile(
            self, path, mode, block_size=block_size or 5 * 2**20, cache_type=cache_type,
            size=size, **kwargs,
        )  # fmt: skip


fsspec.register_implementation("countfs", CountingFS, clobber=True)

MEMBER_BYTES = 30_000


@pytest.fixture(scope="module")
def tars(tmp_path_factory) -> Path:
    """3 class tars of 20 members each (one with a >100-char name: a pax/GNU long name)."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = random.Random(0)
    for c in range(3):
        with tarfile.open(root / f"n0{c}.tar", "w", format=tarfile.PAX_FORMAT) as tar:
            for i in range(20):
                name = f"n0{c}/n0{c}_{i}.JPEG"
                if c == 1 and i == 5:
                    name = f"n0{c}/n0{c}_{'long' * 30}.JPEG"
                data = rng.randbytes(MEMBER_BYTES)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo(f"n0{c}/README.txt")  # not an image: not listed
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    return root


def _expected(root: Path) -> list[tuple[str, str, int, int]]:
    """(id, tar, data offset, size) from Python's tarfile over the whole local file."""
    out = []
    for path in sorted(root.glob("*.tar")):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".JPEG"):
                    out.append((Path(m.name).stem[:20], path.name, m.offset_data, m.size))
    return out


def _shape(refs: list[SampleRef]) -> list[tuple[str, str, int, int]]:
    """Location-free view (over-long ids end in a hash of the tar URL: compare a prefix)."""
    return sorted((r.id[:20], Path(r.image).name, r.offset, r.size) for r in refs)


def _listing(url: str) -> list[SampleRef]:
    return list_source(SourceConfig(kind="imagenet", images=url))


def _tar_bytes_fetched() -> int:
    return sum(n for p, n in FETCHED.items() if p.endswith(".tar"))


def test_naive_walk_downloads_the_tar(tars):
    """The old way (tarfile over a default read-ahead file) fetches every byte: the bug."""
    FETCHED.clear()
    fs = CountingFS()
    path = str(tars / "n00.tar")
    with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        assert len([m for m in tar if m.isfile()]) == 21
    assert FETCHED[path] >= 0.99 * Path(path).stat().st_size


def test_header_walk_reads_a_small_fraction_and_lists_the_same(tars):
    expected = _expected(tars)
    assert len(expected) == 60
    local = _listing(str(tars))
    FETCHED.clear()
    REQUESTS.clear()
    counted = _listing(f"countfs://{tars}")
    total = sum(p.stat().st_size for p in tars.glob("*.tar"))
    assert _shape(counted) == _shape(local) == sorted(expected)
    short = [r.fingerprint() for r in local if "long" not in r.id]
    assert [r.fingerprint() for r in counted if "long" not in r.id] == short
    fetched = _tar_bytes_fetched()
    assert 0 < fetched < 0.06 * total, (fetched, total)  # ~1 KiB per 30 KB member
    assert sum(REQUESTS.values()) <= 2 * 63 + 6  # about one request per member
    one = _listing(f"countfs://{tars}/n01.tar")
    assert _shape(one) == sorted(e for e in expected if e[1] == "n01.tar")


def test_sidecar_index_lists_the_same_without_reading_tars(tars, tmp_path, capsys):
    import shutil

    root = tmp_path / "indexed"
    shutil.copytree(tars, root)
    before = _listing(str(root))
    assert tar_index.main([str(root)]) == 0
    assert "3 indexes written" in capsys.readouterr().out
    assert sorted(p.name for p in root.glob(f"*{TAR_INDEX_SUFFIX}")) == [
        f"n0{c}.tar{TAR_INDEX_SUFFIX}" for c in range(3)
    ]
    FETCHED.clear()
    after = _listing(f"countfs://{root}")
    assert _tar_bytes_fetched() == 0  # only the three small JSON files were read
    assert _shape(after) == _shape(before)
    assert _listing(str(root)) == before  # same URL: identical references, keys and all
    assert _shape(_listing(str(root / "n02.tar"))) == _shape(
        [r for r in before if r.image.endswith("n02.tar")]
    )
    assert tar_index.main([str(root)]) == 0
    assert "0 indexes written, 3 kept" in capsys.readouterr().out

    # a tar that changed after indexing: a clear error, not a wrong listing
    with open(root / "n00.tar", "ab") as f:
        f.write(b"\0" * 10240)
    with pytest.raises(ConfigError, match=r"n00.tar.idx.json is stale.*jobs.tar_index"):
        _listing(str(root))
    (root / f"n01.tar{TAR_INDEX_SUFFIX}").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ConfigError, match=r"n01.tar.idx.json is unreadable"):
        _listing(str(root / "n01.tar"))
    assert tar_index.main([str(root / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
