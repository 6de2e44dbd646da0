"""The shard task body: one shard's samples in, a committed deterministic tar and stats out.

``run_shard`` processes the shard's references (``pipeline.samples``), writes the tar
(``pipeline.tarwriter``) to a spool, hashes it and commits it (``pipeline.commit``), or returns
its bytes for the driver to commit (process-local outputs such as ``memory://``). Pure Python
over ``textboost`` (never Ray): the executor runs it in a Ray task or a plain loop.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass

from pipeline.commit import commit_shard
from pipeline.heap import steady_heap
from pipeline.samples import Reject, SampleSpec, process_sample
from pipeline.sources import SampleRef, fingerprint
from pipeline.tarwriter import write_tar


@dataclass(frozen=True)
class ShardTask:
    """Everything one shard task needs; small enough to ship to a Ray worker."""

    out: str  # shards.out URL
    split: str
    index: int
    refs: tuple[SampleRef, ...]
    spec: SampleSpec
    config_hash: str
    code_version: str
    commit: bool = True  # False: return the tar bytes (process-local output such as memory://)
    fault_marker: str = ""  # pipeline.faults.crash_once (tests only)

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}"


def run_shard(task: ShardTask) -> dict:
    """Task body: process the shard's samples, write and commit the tar, return stats."""
    steady_heap()
    start, cpu = time.perf_counter(), time.process_time()
    samples, rejects = [], []
    for ref in task.refs:
        result = process_sample(ref, task.spec)
        (rejects if isinstance(result, Reject) else samples).append(result)
    with tempfile.SpooledTemporaryFile(max_size=256 << 20) as spool:
        field_bytes = write_tar(samples, spool)
        size = spool.tell()
        spool.seek(0)
        digest = hashlib.sha256()
        for block in iter(lambda: spool.read(1 << 20), b""):
            digest.update(block)
        stats = {
            "name": f"{task.name}.tar",
            "split": task.split,
            "shard": task.index,
            "count": len(samples),
            "inputs": len(task.refs),
            "bytes": size,
            "sha256": digest.hexdigest(),
            "field_bytes": field_bytes,
            "rejected": [r.to_json() for r in sorted(rejects, key=lambda r: r.key)],
            "config_hash": task.config_hash,
            "code_version": task.code_version,
            "inputs_sha256": fingerprint(task.refs),
        }
        spool.seek(0)
        payload = None
        if task.commit:
            commit_shard(task.out, task.name, spool, stats, task.fault_marker)
        else:
            payload = spool.read()
    seconds = {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}
    return {"stats": stats, "payload": payload, "seconds": seconds}
