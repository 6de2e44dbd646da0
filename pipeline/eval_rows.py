"""``<eval.out>/rows.jsonl``: one line per finished (image, model), keyed by a hash of
everything that determines it, so a stopped evaluation resumes and stale lines are never
reused (``pipeline.evaluation``)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable

from pipeline.eval_data import eval_source, threshold
from pipeline.eval_image import ROWS_VERSION
from textboost.config import TextBoostConfig

ROWS_FILE = "rows.jsonl"
ROWS_SYNC_S = 60.0  # remote eval.out: upload rows.jsonl at most this often while running


class RowStore:
    """``rows.jsonl``: the lines read back from an earlier run (a torn last line from a kill
    is skipped) plus the new ones, appended and flushed as they arrive. ``sync`` (remote
    ``eval.out``) uploads the file at most every ``ROWS_SYNC_S`` seconds."""

    def __init__(self, path: str, sync: Callable[[str], None] | None = None):
        self.path, self.sync, self.last_sync = path, sync, time.monotonic()
        self.lines: dict[str, dict] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for text in f:
                    try:
                        line = json.loads(text)
                    except ValueError:
                        continue  # torn write of a killed run
                    if isinstance(line, dict) and line.get("v") == ROWS_VERSION and "id" in line:
                        self.lines[line["id"]] = line
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        if self.file.tell() > 0:
            self.file.write("\n")  # a torn last line stays a line of its own

    def add(self, line: dict) -> None:
        self.lines[line["id"]] = line
        self.file.write(json.dumps(line, sort_keys=True) + "\n")
        self.file.flush()
        if self.sync is not None and time.monotonic() - self.last_sync > ROWS_SYNC_S:
            self.sync(self.path)
            self.last_sync = time.monotonic()

    def close(self, keep: list[str] | None = None) -> None:
        """Close; with ``keep`` (a finished evaluation), rewrite the file with those lines
        only, in that order (stale and torn lines dropped)."""
        self.file.close()
        if keep is None:
            return
        tmp = f"{self.path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(self.lines[i], sort_keys=True) + "\n" for i in keep)
        os.replace(tmp, self.path)


def config_key(cfg: TextBoostConfig, with_lpips: bool) -> str:
    """What, besides the model and the image, determines a line's rows."""
    import textboost
    from textboost.config import to_dict

    execution = ("models", "model_t_test", "out", "limit", "crops", "track", "register")
    execution += ("workers",)
    execution += ("cpus_per_worker", "gpus_per_worker", "dataset")
    src = eval_source(cfg)
    ev = {k: v for k, v in to_dict(cfg.eval).items() if k not in execution}
    if ev.get("select") == "threshold":  # the default: rows written before the switch stay valid
        del ev["select"]
    if ev.get("select_margin") == 0:
        del ev["select_margin"]
    key = {
        "eval": ev,
        "dataset": [src.kind, src.ocr],
        "threshold": threshold(cfg),
        "side_info_format": cfg.shards.side_info_format,
        "synth": to_dict(cfg.data.synth),
        "lpips": with_lpips,
        "version": textboost.__version__,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def line_id(
    config_key: str, label: str, identity: str, fingerprint: str, t_test: float = 0.0
) -> str:
    key = [ROWS_VERSION, config_key, label, identity, fingerprint]
    blob = json.dumps(key + [t_test] if t_test > 0 else key)  # a model's own threshold
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# ---------------------------------------------------------------- run
