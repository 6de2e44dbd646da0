"""``python -m jobs.tar_index URL [URL ...]``: write the sidecar index of ImageNet class tars.

Each tar ``X.tar`` gets ``X.tar.idx.json`` next to it (member name, data offset, size, and the
tar's size). ImageNet listing (``data.*.kind: imagenet``) then reads one small JSON per tar
instead of walking its headers: run it once after uploading the tars. URL is a tar or a
folder of tars (local path or any fsspec URL, e.g. ``s3://bucket/imagenet/train``). Indexes
that already match their tar's size are kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jobs.tar_index", description=__doc__.split("\n")[0].split(": ", 1)[1]
    )
    p.add_argument("urls", nargs="+", help="tar file(s) or folder(s) of .tar files")
    p.add_argument("--force", action="store_true", help="rewrite indexes that look current")
    p.add_argument("--threads", type=int, default=16, help="tars indexed in parallel")
    return p


def tars_of(url: str) -> list[tuple[str, int]]:
    """``(tar URL, size)`` of a tar file or of the .tar files in a folder (recursive)."""
    from pipeline.sources import _fs, _join, _list_files, absolute_url
    from textboost.errors import ConfigError

    url = absolute_url(url)
    fs, path = _fs(url)
    if fs.isfile(path):
        return [(url, int(fs.size(path)))]
    if not fs.isdir(path):
        raise ConfigError(f"{url} does not exist; give a .tar file or a folder of .tar files")
    files = _list_files(url, "tar_index")
    tars = [(_join(url, rel), size) for rel, size in sorted(files.items()) if rel.endswith(".tar")]
    if not tars:
        raise ConfigError(f"{url} holds no .tar files")
    return tars


def index_tar(url: str, size: int, force: bool = False) -> str:
    """Write ``<url>.idx.json`` unless a current one exists; returns what was done."""
    from pipeline.sources import TAR_INDEX_SUFFIX, _fs, read_tar_index, tar_index_bytes
    from textboost.errors import ConfigError

    index = url + TAR_INDEX_SUFFIX
    fs, path = _fs(index)
    if not force and fs.exists(path):
        try:
            read_tar_index(index, size)
            return "kept"
        except ConfigError:
            pass  # stale or unreadable: rewrite
    data = tar_index_bytes(url)
    tmp = f"{path}.tmp"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    fs.mv(tmp, path)
    return "written"


def main(argv: list[str] | None = None) -> int:
    from textboost.errors import TextBoostError

    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        tars = [t for url in args.urls for t in tars_of(url)]
        with ThreadPoolExecutor(max(1, args.threads)) as pool:
            done = list(pool.map(lambda t: index_tar(*t, force=args.force), tars))
    except TextBoostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{len(tars)} tars: {done.count('written')} indexes written, {done.count('kept')} kept "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
