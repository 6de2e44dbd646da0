"""Test-only fault injection: hooks switched on by environment variables read on the driver.

- ``TEXTBOOST_FAULT_SHARD_ONCE=<path>``: the first shard task to commit a tar dies
  (``os._exit``) between the tar's temporary write and its rename, once: it creates ``<path>``
  first, and a task that finds it goes on (the shard tests check Ray retries the task).
- ``TEXTBOOST_FAULT_TRAIN_STEP=<n>``: rank 0 of a training run raises once, before step
  ``n``; a marker file in the run's folder keeps the resumed run from raising again.

The driver reads them (``shard_once_marker``, ``train_step``) when it plans the shard tasks or
starts a training run and passes the values in the tasks' and workers' arguments, so workers
need no environment. Unset (the default), nothing happens. They are not config keys: a
fault is not part of what a run computes (``textboost.config.REMOVED_KEYS``).
"""

from __future__ import annotations

import os

SHARD_ONCE = "TEXTBOOST_FAULT_SHARD_ONCE"
TRAIN_STEP = "TEXTBOOST_FAULT_TRAIN_STEP"


def shard_once_marker() -> str:
    """The marker path of ``TEXTBOOST_FAULT_SHARD_ONCE`` ("" when unset: no fault)."""
    return os.environ.get(SHARD_ONCE, "")


def train_step() -> int:
    """The step of ``TEXTBOOST_FAULT_TRAIN_STEP`` (-1 when unset: no fault)."""
    raw = os.environ.get(TRAIN_STEP, "").strip()
    if not raw:
        return -1
    try:
        return int(raw)
    except ValueError:
        from textboost.errors import ConfigError

        raise ConfigError(f"{TRAIN_STEP}={raw!r}: give a step number (an integer)") from None


def crash_once(marker: str) -> None:
    """Shard hook: the first process to get here with ``marker`` set dies, once."""
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(17)


def raise_once_at(step: int, fault_step: int, rank: int, experiment_dir: str) -> None:
    """Training hook: rank 0 raises once when it reaches ``fault_step`` (-1: never)."""
    if step != fault_step or rank != 0:
        return
    import fsspec

    marker = f"{experiment_dir}/fault_injected_at_step_{step}"
    fs, path = fsspec.core.url_to_fs(marker)
    if fs.exists(path):
        return
    fs.makedirs(os.path.dirname(path), exist_ok=True)
    fs.pipe_file(path, b"1")
    raise RuntimeError(f"injected fault at step {step} ({TRAIN_STEP})")
