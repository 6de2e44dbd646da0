"""MLflow for a training run: the run itself (opened, or reopened on relaunch) and its metrics.

The driver opens the run (``open_mlflow_run``); rank 0 logs the training metrics to it
(``MetricLog``), so every node must reach the tracking store (the sqlite default suits one
machine; use an MLflow server on a cluster).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipeline.tracking import TAG
from textboost.config import TextBoostConfig, flatten, to_dict

METRIC_KEYS = {  # loss-dict key -> MLflow metric name
    "loss": "train.loss",
    "bpp_loss": "train.bpp",
    "mse_loss": "train.mse",
    "psnr": "train.psnr",
    "gc_loss": "train.gc_loss",
    "aux_loss": "train.aux_loss",
}


def absolute_tracking_uri(uri: str) -> str:
    """``sqlite:///relative.db`` -> ``sqlite:////abs/relative.db`` (workers run elsewhere)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        path = Path(uri[len(prefix) :]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"{prefix}{path}"
    return uri


def open_mlflow_run(cfg: TextBoostConfig, run_name: str, tags: dict, tracking_uri: str) -> str:
    """Create the MLflow run, or reopen the one of an earlier launch with this run name."""
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import ensure_experiment

    client = MlflowClient(tracking_uri)
    exp_id = ensure_experiment(tracking_uri, cfg.mlflow.experiment)
    found = client.search_runs(
        [exp_id], filter_string=f"tags.`{TAG}ray_run_name` = '{run_name}'", max_results=1
    )
    params = {k: str(v)[:6000] for k, v in flatten(to_dict(cfg)).items()}
    if found:
        run = found[0]
        client.update_run(run.info.run_id, status="RUNNING")
        known = run.data.params
        changed = {
            f"{TAG}relaunch.{k}": v for k, v in params.items() if k in known and known[k] != v
        }
        params = {k: v for k, v in params.items() if k not in known}
        tags = {**tags, **changed}
    else:
        run = client.create_run(exp_id, run_name=run_name, tags={f"{TAG}ray_run_name": run_name})
    from mlflow.entities import Param, RunTag

    run_id = run.info.run_id
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return run_id


class MetricLog:
    """Rank-0 MLflow logging of the training metrics, cheap enough for millions of steps.

    Each metric is **averaged over a window** of ``log_every`` steps (over the steps of the
    window that reported it) and logged once, at the window's last step: ``log_every=50`` gives
    one row per metric per 50 steps (a window is also closed early at checkpoints and at the
    end). Values may be device tensors: they are summed on the device and read once a window.
    Rows are sent in batches every ``flush_s`` seconds and at checkpoints, so fast steps never
    wait on the tracking store. A failing flush (server down, timeout) prints a one-line
    warning and never stops training: the rows stay buffered and go with the next flush; at
    most ``max_rows`` are kept (the oldest are dropped, and counted in ``dropped``).
    """

    def __init__(
        self, tracking_uri: str, run_id: str, log_every: int = 1, flush_s: float = 15.0,
        max_rows: int = 100_000,
    ):  # fmt: skip
        from mlflow.tracking import MlflowClient

        self.client, self.run_id, self.flush_s = MlflowClient(tracking_uri), run_id, flush_s
        self.log_every, self.max_rows = max(1, log_every), max_rows
        self.pending: list[tuple[int, str, float]] = []  # (step, key, value) rows to send
        self.sums: dict = {}
        self.counts: dict[str, int] = {}
        self.step, self.dropped, self.failures = 0, 0, 0
        self.last = time.monotonic()

    def add(self, step: int, values: dict) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.step = step
        if step % self.log_every == 0:
            self.close_window()
        if time.monotonic() - self.last >= self.flush_s:
            self.flush()

    def close_window(self) -> None:
        """Turn the window's sums into rows (mean per key) at the latest step."""
        for key, total in self.sums.items():
            self.pending.append((self.step, key, float(total) / self.counts[key]))
        self.sums, self.counts = {}, {}
        excess = len(self.pending) - self.max_rows
        if excess > 0:
            del self.pending[:excess]
            self.dropped += excess

    def flush(self) -> None:
        """Close the open window and send every buffered row (never raises)."""
        from mlflow.entities import Metric

        self.close_window()
        self.last = time.monotonic()
        now, sent = int(time.time() * 1000), 0
        try:
            while sent < len(self.pending):
                chunk = self.pending[sent : sent + 1000]  # MLflow's batch limit
                metrics = [Metric(key, value, now, step) for step, key, value in chunk]
                self.client.log_batch(self.run_id, metrics=metrics)
                sent += len(chunk)
        except Exception as exc:  # any store failure: warn, keep the rows, train on
            self.failures += 1
            why = (str(exc).strip().splitlines() or [""])[0][:200]
            print(
                f"warning: MLflow metric flush failed at step {self.step} "
                f"({type(exc).__name__}: {why}); {len(self.pending) - sent} rows kept for "
                f"the next flush (at most {self.max_rows})",
                file=sys.stderr,
                flush=True,
            )
        del self.pending[:sent]
