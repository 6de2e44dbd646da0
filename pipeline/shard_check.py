"""Checking shards: ``verify_shards`` (hashes, sizes, counts, fields against markers and
manifest) and ``rebuild_check`` (regenerate every shard from the manifest into an empty
scratch folder, compare sha256 of stored and rebuilt bytes and the manifest's: never sizes).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor

import fsspec

from pipeline.shards import (
    MANIFEST,
    REJECTED,
    SPLITS,
    build_split,
    config_hash_of,
    filesystem,
    folder_of,
    read_json,
    read_manifest,
)
from textboost.config import TextBoostConfig


class _HashingReader(io.RawIOBase):
    """A read-only stream that hashes and counts everything read through it."""

    def __init__(self, f: io.IOBase) -> None:
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        data = self.f.read(len(buf))
        buf[: len(data)] = data
        self.sha.update(data)
        self.n += len(data)
        return len(data)

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def scan_tar(fs: fsspec.AbstractFileSystem, path: str) -> tuple[str, int, dict[str, set[str]]]:
    """(sha256, bytes, {sample key: field names}) of a tar, in one streaming pass."""
    with fs.open(path, "rb") as f:
        reader = _HashingReader(f)
        samples: dict[str, set[str]] = {}
        with tarfile.open(fileobj=io.BufferedReader(reader, 1 << 20), mode="r|") as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                samples.setdefault(key, set()).add(ext)
        reader.drain()
    return reader.sha.hexdigest(), reader.n, samples


def _verify_shard(fs: fsspec.AbstractFileSystem, root: str, shard: dict) -> list[str]:
    from pipeline.samples import FIELDS

    name, errors = shard["name"], []
    stats = read_json(fs, f"{root}/{name[:-4]}.json")
    if stats is None:
        errors.append(f"{name}: commit marker {name[:-4]}.json is missing or unreadable")
    try:
        digest, size, samples = scan_tar(fs, f"{root}/{name}")
    except FileNotFoundError:
        return errors + [f"{name}: shard file is missing"]
    except tarfile.TarError as exc:
        return errors + [f"{name}: not a readable tar ({exc})"]
    found = {"sha256": digest, "bytes": size, "count": len(samples)}
    for key, value in found.items():
        if value != shard[key]:
            errors.append(f"{name}: {key} is {value}, manifest says {shard[key]}")
        if stats is not None and value != stats.get(key):
            errors.append(f"{name}: {key} is {value}, its marker says {stats.get(key)}")
    for key, fields in sorted(samples.items()):
        images = fields & {"jpg", "png"}
        if len(images) != 1 or not set(FIELDS) <= fields:
            errors.append(f"{name}: sample {key} has fields {sorted(fields)}")
    return errors


def verify_shards(url: str, threads: int = 8) -> dict:
    """Recompute every shard's sha256, size and sample count against markers and manifest."""
    manifest = read_manifest(url)
    fs, root = filesystem(folder_of(url))
    shards = [s for entry in manifest["splits"].values() for s in entry["shards"]]
    with ThreadPoolExecutor(threads) as pool:  # hashing releases the GIL; reads are I/O
        errors = [
            e for errs in pool.map(lambda s: _verify_shard(fs, root, s), shards) for e in errs
        ]
    listed = {MANIFEST, REJECTED} | {
        n for s in shards for n in (s["name"], s["name"][:-4] + ".json")
    }
    for path in sorted(fs.ls(root, detail=False)):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name not in listed and (".tmp-" in name or name.split("-", 1)[0] in SPLITS):
            errors.append(f"{name}: not part of the manifest (partial or stale file)")
    return {
        "url": url,
        "ok": not errors,
        "shards": len(shards),
        "samples": sum(s["count"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "errors": errors,
    }


def config_from_manifest(
    entry: dict, out: str, overrides: list[str] | None = None
) -> TextBoostConfig:
    """The config a split was built with (from its manifest entry), writing to ``out``."""
    from omegaconf import OmegaConf

    from textboost.config import load_config

    stored = {"data": entry["config"]["data"], "shards": {**entry["config"]["shards"], "out": out}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(OmegaConf.to_yaml(OmegaConf.create(stored)))
    try:
        return load_config(f.name, overrides)
    finally:
        os.unlink(f.name)


def file_sha256(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """sha256 of a file, streamed (a shard can be large)."""
    sha = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _compare(
    fs: fsspec.AbstractFileSystem, path: str, sfs: fsspec.AbstractFileSystem, spath: str,
    recorded: dict,
) -> str:  # fmt: skip
    """'' when the shard, its rebuild and the manifest agree by sha256 (never by size
    alone), else why not."""
    try:
        stored = file_sha256(fs, path)
    except FileNotFoundError:
        return "shard file is missing"
    rebuilt = file_sha256(sfs, spath)
    if stored != rebuilt:
        return f"rebuilt bytes differ (sha256 {stored[:12]} stored, {rebuilt[:12]} rebuilt)"
    if stored != recorded["sha256"]:
        return f"sha256 {stored[:12]} differs from the manifest's {recorded['sha256'][:12]}"
    return ""


def _check_scratch(fs: fsspec.AbstractFileSystem, root: str, into: str) -> None:
    """A rebuild must regenerate every shard: ``into`` may be neither the shard folder (nor
    inside it) nor a folder that already holds shards (the builder would resume, skip them
    and compare the old files)."""
    from textboost.errors import ShardError

    sfs, sroot = filesystem(into)
    same_fs = type(sfs) is type(fs)
    if same_fs and (sroot == root or sroot.startswith(root + "/")):
        raise ShardError(
            f"--into {into} is the shard folder itself (or inside it); give an empty scratch "
            "folder: a rebuild must regenerate every shard"
        )
    if sfs.exists(sroot):
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in sfs.ls(sroot, detail=False)]
        held = sorted(n for n in names if n == MANIFEST or n.split("-", 1)[0] in SPLITS)
        if held:
            raise ShardError(
                f"--into {into} already holds shards ({', '.join(held[:3])}"
                f"{', ...' if len(held) > 3 else ''}); give an empty folder: a rebuild must "
                "regenerate every shard, not resume"
            )


def rebuild_check(
    url: str, splits: list[str] | None = None, only: set[int] | None = None,
    overrides: list[str] | None = None, into: str | None = None,
) -> dict:  # fmt: skip
    """Regenerate shards from the manifest into a scratch folder and compare byte for byte.

    ``into`` must be reachable by every Ray worker (on a cluster: an ``s3://`` prefix); by
    default a local temp dir, removed afterwards.
    """
    manifest = read_manifest(url)
    fs, root = filesystem(folder_of(url))
    report: dict = {"url": url, "compared": 0, "errors": [], "notes": []}
    if into is not None:
        _check_scratch(fs, root, into)
    scratch = into or tempfile.mkdtemp(prefix="textboost-rebuild-")
    sfs, sroot = filesystem(scratch)
    try:
        for split in splits or list(manifest["splits"]):
            entry = manifest["splits"].get(split)
            if entry is None:
                report["errors"].append(f"{split}: not in the manifest")
                continue
            cfg = config_from_manifest(entry, scratch, overrides)
            if config_hash_of(cfg, split) != entry["config_hash"]:
                report["errors"].append(f"{split}: the stored config does not reproduce its hash")
            stats, summary = build_split(cfg, split, only)
            if summary["code_version"] != entry["code_version"]:
                report["notes"].append(
                    f"{split}: built with code {entry['code_version']}, now {summary['code_version']}"
                )
            if summary["source_fingerprint"] != entry["source_fingerprint"]:
                report["errors"].append(f"{split}: the source changed since the build")
            if len(stats) != len(entry["shards"]):
                report["errors"].append(
                    f"{split}: {len(stats)} shards now, {len(entry['shards'])} built"
                )
            for new, old in zip(stats, entry["shards"]):
                if new is None or (only is not None and new["shard"] not in only):
                    continue
                report["compared"] += 1
                error = _compare(fs, f"{root}/{old['name']}", sfs, f"{sroot}/{new['name']}", old)
                if error:
                    report["errors"].append(f"{old['name']}: {error}")
    finally:
        if into is None:
            shutil.rmtree(scratch, ignore_errors=True)
    report["ok"] = not report["errors"]
    return report
