"""Resumable stages: each keeps ``<workdir>/pipeline/<stage>.json`` with its input hash.

A stage whose state is ``done`` with the same hash and intact outputs is skipped; one that
died (``running``) with the same hash is resumed (its ``run`` sees the old state); anything
else runs from scratch. State files are replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.console import say
from textboost.canonical import sha256_json
from textboost.config import TextBoostConfig
from textboost.errors import ConfigError

STATE_DIR = "pipeline"


def sha256_url(url: str) -> str:
    """sha256 of a file at a path or fsspec URL."""
    import fsspec

    h = hashlib.sha256()
    with fsspec.open(url, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class StageState:
    """``<workdir>/pipeline/<stage>.json``: status, input hash, outputs, timings."""

    path: Path
    data: dict = field(default_factory=dict)

    @classmethod
    def load(cls, workdir: str, stage: str) -> StageState:
        path = Path(workdir) / STATE_DIR / f"{stage}.json"
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            data = {}
        return cls(path, data if isinstance(data, dict) else {})

    def save(self, **updates: object) -> None:
        self.data.update(updates)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, self.path)  # atomic: a crash never leaves half a state file


@dataclass
class Stage:
    """One pipeline stage: ``key`` hashes its inputs, ``run`` produces its outputs, ``intact``
    checks that recorded outputs still exist unchanged (else the stage runs again)."""

    name: str
    key: Callable[[TextBoostConfig, dict], dict]
    run: Callable[[TextBoostConfig, dict, StageState], dict]
    intact: Callable[[dict], bool] = lambda outputs: True


def run_stage(stage: Stage, cfg: TextBoostConfig, done: dict, workdir: str, force: bool) -> dict:
    """Skip, resume or run one stage; returns its state (with ``outputs``)."""
    state = StageState.load(workdir, stage.name)
    try:
        key = sha256_json({"stage": stage.name, **stage.key(cfg, done)}, default=str)
    except KeyError as exc:
        raise ConfigError(
            f"stage {stage.name} needs the outputs of stage {exc.args[0]}: add it to "
            "pipeline.stages (or run it once)"
        ) from None
    same = state.data.get("key") == key
    if same and state.data.get("status") == "done" and not force:
        try:
            if stage.intact(state.data["outputs"]):
                state.save(skipped=True, checked=time.time())
                return state.data
        except (OSError, KeyError):
            pass
        say(f"  outputs of {stage.name} changed or vanished: running it again")
    resuming = same and state.data.get("status") == "running" and not force
    if not resuming:
        attempt = state.data.get("attempt", 0)
        state.data = {"stage": stage.name, "attempt": attempt}
    say(f"  {'resuming' if resuming else 'running'} (state {state.path})")
    state.save(key=key, status="running", started=time.time(), skipped=False)
    start = time.perf_counter()
    try:
        outputs = stage.run(cfg, done, state)
    except BaseException:
        say(
            f"stage {stage.name} failed: fix the cause and rerun the same command; it resumes "
            f"here (state {state.path})"
        )
        raise
    state.save(status="done", outputs=outputs, seconds=round(time.perf_counter() - start, 1))
    return state.data
