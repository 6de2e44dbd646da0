"""WebDataset shard builder: deterministic plan, one task per shard, commit markers, manifest.

Layout of ``shards.out`` (docs/architecture.md "Dataset layout"):

- ``<split>-%06d.tar``: uncompressed, members sorted (sample key, then field), fixed
  mtime/uid/gid/uname: the same inputs and config give the same bytes on every rebuild.
- ``<split>-%06d.json``: the shard's stats (count, bytes, sha256, rejects); written last,
  it is the shard's commit marker. A tar without a matching marker is not a shard.
- ``manifest.json``: per split the config hash, the resolved config (for ``rebuild``), the
  source fingerprint, the code version and the shard list with sha256; written after all
  shards of a split are committed.
- ``rejected.jsonl``: every rejected input with its reason, merged from the markers.

Every file is written under a temporary name and renamed. A rerun skips shards whose marker
matches the config hash, code version and inputs; anything else is rebuilt in place.
"""

from __future__ import annotations

import json
import sys
import time

import fsspec
from tqdm import tqdm

from pipeline import executor, faults
from pipeline.code_version import code_version
from pipeline.commit import commit_shard, dumps, write_atomic
from pipeline.samples import SampleSpec
from pipeline.shard_order import mixed_order
from pipeline.shard_task import ShardTask, run_shard
from pipeline.sources import SampleRef, absolute_url, fingerprint, list_source
from textboost.canonical import sha256_json
from textboost.config import SourceConfig, TextBoostConfig, to_dict
from textboost.errors import ConfigError

SPLITS = ("train", "val")
BYTES_FIELDS = ("samples_per_shard", "side_info_format", "jpeg_quality_for_png", "order")
MANIFEST = "manifest.json"
REJECTED = "rejected.jsonl"
FORMAT = "textboost-shards/1"


def source_of(cfg: TextBoostConfig, split: str) -> SourceConfig:
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} is not allowed; choose one of {list(SPLITS)}")
    return cfg.data.train if split == "train" else cfg.data.val


def settings_of(cfg: TextBoostConfig, split: str) -> dict:
    """The config that determines the bytes of a split's shards (hashed into config_hash)."""
    src = source_of(cfg, split)
    settings = {
        "split": split,
        "source": to_dict(src),
        "threshold": cfg.data.filter.t_train if split == "train" else cfg.data.filter.t_test,
        "samples_per_shard": cfg.shards.samples_per_shard,
        "side_info_format": cfg.shards.side_info_format,
        "order": cfg.shards.order,
    }
    if src.kind == "synthetic":
        settings["synth"] = to_dict(cfg.data.synth)
    return settings


def config_hash_of(cfg: TextBoostConfig, split: str) -> str:
    """A split's ``config_hash`` in the manifest: sha256 of its settings' UTF-8 canonical JSON."""
    return sha256_json(settings_of(cfg, split), ensure_ascii=False)


def environment() -> dict:
    """Library versions that can change shard bytes (recorded, not compared)."""
    import zlib

    import numpy
    import PIL

    return {
        "python": sys.version.split()[0],
        "pillow": PIL.__version__,
        "numpy": numpy.__version__,
        "zlib": zlib.ZLIB_VERSION,
    }


def sample_spec(cfg: TextBoostConfig, split: str) -> SampleSpec:
    """How each sample of ``split`` is made: filter threshold, side-info format, synth settings."""
    synth = cfg.data.synth
    kwargs = {
        "max_side": synth.max_side,
        "min_side": synth.min_side,
        "words": (synth.words_min, synth.words_max),
        "backgrounds": synth.backgrounds or None,
    }
    if synth.fonts:  # only when set: default configs keep their shard bytes and hashes
        kwargs["fonts"] = synth.fonts
    threshold = float(settings_of(cfg, split)["threshold"])
    return SampleSpec(threshold, cfg.shards.side_info_format, kwargs, synth.seed)


def plan(cfg: TextBoostConfig, split: str) -> tuple[list[ShardTask], list[SampleRef]]:
    """The deterministic plan: references (``shards.order``: class-mixed or sorted) cut into
    fixed-size shards, each shard's members sorted by key. Returns the tasks and the sorted
    references (the source fingerprint is over that sorted list)."""
    src = source_of(cfg, split)
    refs = list_source(src, split, cfg.data.synth)
    if not refs:
        raise ConfigError(f"data.{split} ({src.kind}: {src.images or 'synthetic'}) has no images")
    memory_output = _is_memory(cfg.shards.out)
    if cfg.shards.executor == "ray" and any(
        _is_memory(r.image) or _is_memory(r.gt_url) for r in refs
    ):
        raise ConfigError(
            "memory:// inputs live in this process only; Ray workers cannot read them. "
            "Use a local path or s3://, or shards.executor=local"
        )
    spec = sample_spec(cfg, split)
    chash = config_hash_of(cfg, split)
    version = code_version()
    n = cfg.shards.samples_per_shard
    out = absolute_url(cfg.shards.out)
    ordered = mixed_order(refs) if cfg.shards.order == "mixed" else refs
    tasks = [
        ShardTask(
            out,
            split,
            i // n,
            tuple(sorted(ordered[i : i + n], key=lambda r: r.key)),
            spec,
            chash,
            version,
            commit=not (memory_output and cfg.shards.executor == "ray"),
            fault_marker=faults.shard_once_marker(),
        )  # fmt: skip
        for i in range(0, len(ordered), n)
    ]
    return tasks, refs


def _is_memory(url: str) -> bool:
    return url.startswith("memory:")


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(filesystem, path without a trailing slash)`` of an fsspec URL."""
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path.rstrip("/")


def folder_of(url: str) -> str:
    """The shard folder of ``url`` (the folder itself or its ``manifest.json``)."""
    return url[: -len(MANIFEST)].rstrip("/") if url.endswith(MANIFEST) else url.rstrip("/")


def read_json(fs: fsspec.AbstractFileSystem, path: str) -> dict | None:
    """A JSON object file, or None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(fs.cat_file(path))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _listing(fs: fsspec.AbstractFileSystem, root: str, prefix: str = "") -> dict[str, int]:
    """``{file name: size}`` of the folder's files whose name starts with ``prefix``."""
    entries = fs.ls(root, detail=True) if fs.exists(root) else []
    names = {e["name"].rstrip("/").rsplit("/", 1)[-1]: int(e.get("size") or 0) for e in entries}
    return {n: size for n, size in names.items() if n.startswith(prefix)}


def _read_markers(fs: fsspec.AbstractFileSystem, root: str, names: list[str]) -> dict[str, dict]:
    """The JSON files among ``names`` (existing ones only), fetched concurrently where the
    filesystem can (s3fs): one round trip for a thousand shard markers, not a thousand."""
    if not names:
        return {}
    blobs = fs.cat([f"{root}/{n}" for n in names], on_error="omit")
    out = {}
    for path, blob in blobs.items():
        try:
            data = json.loads(blob)
        except ValueError:
            continue
        if isinstance(data, dict):
            out[path.rstrip("/").rsplit("/", 1)[-1]] = data
    return out


def _valid(stats: dict | None, task: ShardTask, tar_size: int | None) -> dict | None:
    """The marker's stats if it commits a shard of this config, code and inputs."""
    if not stats or tar_size != stats.get("bytes"):
        return None
    same = (
        stats.get("config_hash") == task.config_hash
        and stats.get("code_version") == task.code_version
        and stats.get("inputs_sha256") == fingerprint(task.refs)
    )
    return stats if same else None


def _clean(fs: fsspec.AbstractFileSystem, root: str, files: dict[str, int], n_shards: int) -> None:
    """Remove temp files of dead attempts and shards beyond the plan (of a larger build)."""
    doomed = []
    for name in files:
        index = name.split(".", 1)[0].split("-", 1)[-1]
        stale = len(index) == 6 and index.isdigit() and int(index) >= n_shards
        if ".tmp-" in name or stale:
            doomed.append(f"{root}/{name}")
    if doomed:
        fs.rm(doomed)


def manifest_sha256(url: str) -> str:
    """sha256 of the bytes of the shard folder's ``manifest.json`` (``url``: the folder), as
    checkpoints, training runs and the pipeline's shard stage record it (lineage)."""
    from pipeline.stage_state import sha256_url

    return sha256_url(f"{url.rstrip('/')}/{MANIFEST}")


def read_manifest(url: str) -> dict:
    """The ``manifest.json`` of a shard folder (``url`` is the folder or the file)."""
    from textboost.errors import ShardError

    fs, root = filesystem(url)
    path = root if root.endswith(".json") else f"{root}/{MANIFEST}"
    manifest = read_json(fs, path)
    if manifest is None or manifest.get("format") != FORMAT:
        raise ShardError(
            f"{url}: no valid {MANIFEST} ({FORMAT}); build the shards with `textboost shards build`"
        )
    return manifest


def _load_manifest(fs: fsspec.AbstractFileSystem, root: str) -> dict:
    manifest = read_json(fs, f"{root}/{MANIFEST}")
    if manifest is None or manifest.get("format") != FORMAT:
        manifest = {"format": FORMAT, "splits": {}}
    return manifest


def _save_manifest(fs: fsspec.AbstractFileSystem, root: str, manifest: dict) -> None:
    """Write ``rejected.jsonl`` (merged from the shard markers, in order), then the manifest."""
    manifest["splits"] = dict(sorted(manifest["splits"].items()))
    shards = [(split, s["name"]) for split, e in manifest["splits"].items() for s in e["shards"]]
    markers = _read_markers(fs, root, [name[:-4] + ".json" for _, name in shards])
    lines = []
    for split, name in shards:
        for reject in markers.get(name[:-4] + ".json", {}).get("rejected", []):
            lines.append(dumps({"split": split, "shard": name, **reject}) + b"\n")
    write_atomic(fs, f"{root}/{REJECTED}", b"".join(lines))
    write_atomic(fs, f"{root}/{MANIFEST}", dumps(manifest) + b"\n")


def shard_urls(url: str, split: str) -> list[str]:
    """URLs of a split's non-empty shards, in order (for ``webdataset`` / the loader)."""
    from textboost.errors import ShardError

    entry = read_manifest(url)["splits"].get(split)
    if entry is None:
        raise ShardError(f"{url}: the manifest has no '{split}' split; build it first")
    return [f"{folder_of(url)}/{s['name']}" for s in entry["shards"] if s["count"] > 0]


def _committed(
    fs: fsspec.AbstractFileSystem, root: str, split: str, tasks: list[ShardTask]
) -> dict[int, dict | None]:
    """Each planned shard's marker stats if it is committed for this config, code and inputs,
    else None; temp files of dead attempts and shards beyond the plan are removed first."""
    files = _listing(fs, root, f"{split}-")
    _clean(fs, root, files, len(tasks))
    markers = _read_markers(
        fs, root, [f"{t.name}.json" for t in tasks if f"{t.name}.json" in files]
    )
    return {
        t.index: _valid(markers.get(f"{t.name}.json"), t, files.get(f"{t.name}.tar")) for t in tasks
    }


def build_split(
    cfg: TextBoostConfig, split: str, only: set[int] | None = None
) -> tuple[list[dict], dict]:
    """Build the missing shards of one split; returns (stats of all planned shards, summary)."""
    tasks, refs = plan(cfg, split)
    fs, root = filesystem(cfg.shards.out)
    fs.makedirs(root, exist_ok=True)
    committed = _committed(fs, root, split, tasks)
    todo = [t for t in tasks if committed[t.index] is None and (only is None or t.index in only)]
    if todo and only is None:
        manifest = _load_manifest(fs, root)
        if manifest["splits"].pop(split, None) is not None:
            _save_manifest(fs, root, manifest)  # never list shards that are being replaced
    skipped = len(tasks) - len(todo)
    bar = tqdm(total=sum(len(t.refs) for t in todo), desc=f"shards {split}", unit="img",
               disable=not cfg.shards.progress, dynamic_ncols=True)  # fmt: skip
    bar.set_postfix(shards=f"{skipped}/{len(tasks)}", rejects=0)
    built: dict[int, dict] = {}
    task_seconds: dict[str, float] = {}  # summed over tasks: wall and CPU time

    def on_done(result: dict) -> None:
        stats = result["stats"]
        if result["payload"] is not None:
            commit_shard(cfg.shards.out, stats["name"][:-4], result["payload"], stats)
        built[stats["shard"]] = stats
        for k, v in result["seconds"].items():
            task_seconds[k] = task_seconds.get(k, 0.0) + v
        rejects = sum(len(s["rejected"]) for s in built.values())
        bar.set_postfix(
            shards=f"{skipped + len(built)}/{len(tasks)}", rejects=rejects, refresh=False
        )
        bar.update(stats["inputs"])

    start = time.perf_counter()
    executor.run_tasks(
        run_shard, todo, on_done, executor=cfg.shards.executor, ray_cfg=cfg.ray,
        cpus_per_task=cfg.shards.cpus_per_task, max_in_flight=cfg.shards.max_in_flight,
        max_retries=cfg.shards.max_retries,
    )  # fmt: skip
    bar.close()
    fs.invalidate_cache()  # workers wrote here: drop cached listings (s3fs)
    _clean(fs, root, _listing(fs, root, f"{split}-"), len(tasks))  # dead attempts' temp files
    stats = [built.get(t.index) or committed[t.index] for t in tasks]
    summary = {
        "split": split,
        "shards": len(tasks),
        "built": len(built),
        "skipped": skipped,
        "inputs": len(refs),
        "built_inputs": sum(len(t.refs) for t in todo),
        "seconds": time.perf_counter() - start,
        "task_seconds": task_seconds,
        "source_fingerprint": fingerprint(refs),
        "config_hash": tasks[0].config_hash,
        "code_version": tasks[0].code_version,
    }
    return stats, summary


def build_shards(cfg: TextBoostConfig, split: str) -> dict:
    """Build (or resume) one split and record it in ``manifest.json``; returns the manifest."""
    stats, summary = build_split(cfg, split)
    fs, root = filesystem(cfg.shards.out)
    manifest = _load_manifest(fs, root)
    # only what determines the bytes: execution settings (workers, retries, out) stay out,
    # so the manifest, like the shards, is the same however the build was run
    stored_shards = {k: getattr(cfg.shards, k) for k in BYTES_FIELDS}
    manifest["splits"][split] = {
        "config_hash": summary["config_hash"],
        "code_version": summary["code_version"],
        "environment": environment(),
        "settings": settings_of(cfg, split),
        "config": {"data": to_dict(cfg.data), "shards": stored_shards},
        "source_fingerprint": summary["source_fingerprint"],
        "inputs": summary["inputs"],
        "count": sum(s["count"] for s in stats),
        "bytes": sum(s["bytes"] for s in stats),
        "rejected": sum(len(s["rejected"]) for s in stats),
        "shards": [{k: s[k] for k in ("name", "count", "bytes", "sha256")} for s in stats],
    }
    _save_manifest(fs, root, manifest)
    _print_summary(summary, manifest["splits"][split], cfg.shards.progress)
    return manifest


def _print_summary(summary: dict, entry: dict, enabled: bool) -> None:
    if not enabled:
        return
    rate = summary["built_inputs"] / max(summary["seconds"], 1e-9)
    print(
        f"{summary['split']}: {summary['shards']} shards ({summary['built']} built, "
        f"{summary['skipped']} skipped), {entry['count']} samples, {entry['rejected']} rejected, "
        f"{entry['bytes'] / 1e6:.1f} MB, {summary['seconds']:.1f} s"
        + (f", {rate:.1f} samples/s" if summary["built"] else ""),
        file=sys.stderr,
    )
