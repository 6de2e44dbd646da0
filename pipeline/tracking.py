"""MLflow tracking: the store (URI checks, setup, experiments, client) and evaluation run logging.

- ``setup_mlflow(mlflow_cfg)``: tracking + registry URI (default ``sqlite:///<workdir>/mlflow.db``,
  a database store, which the registry needs) and the experiment.
- ``log_summary``: an evaluation's mean metrics in the active run.

The codec as a pyfunc model is ``pipeline.pyfunc``, the registry and its aliases
``pipeline.registry``, the early check of model URIs ``pipeline.model_uris``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from textboost.config import MlflowConfig
from textboost.errors import ConfigError

TAG = "textboost."  # prefix of the MLflow tags this project sets (runs, registered versions)


# Bounded waits for MLflow's HTTP client (its defaults: 120 s per request, 7 retries with
# exponential backoff: many minutes of silence when a server dies mid-run; a server that is
# down from the start is caught in seconds by check_tracking_uri). Set before any MLflow
# client exists (by the console script, jobs.cli, and check_tracking_uri), inherited by Ray
# workers; a value already in the environment wins. The timeout leaves a server time to store a large model artifact.
# Object storage (s3fs) has bounded defaults of its own: 5 s to connect, 15 s per read,
# 5 retries.
NETWORK_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


def apply_network_defaults() -> None:
    """Put ``NETWORK_DEFAULTS`` into the environment (values already set are kept)."""
    for key, value in NETWORK_DEFAULTS.items():
        os.environ.setdefault(key, value)


# Stores that hold a model registry: a database (SQLAlchemy URL) or an MLflow server.
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
SERVER_SCHEMES = ("http", "https")
PROBE_TIMEOUT_S = 5.0


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URI (None for other or in-memory URIs)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def check_tracking_uri(uri: str, must_exist: bool = False) -> str:
    """Check an MLflow tracking/registry URI before any MLflow client uses it; returns it.

    An empty URI, a local folder or an unknown scheme raises ``ConfigError`` (the registry
    needs a database store); with ``must_exist`` (read-only commands) a sqlite database that
    does not exist raises ``ConfigError`` instead of being created empty; an http(s) server
    that does not answer within ``PROBE_TIMEOUT_S`` raises ``ServiceError``. Sets bounded
    timeouts and retries for MLflow's HTTP client (``NETWORK_DEFAULTS``).
    """
    apply_network_defaults()
    uri = str(uri or "")
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if uri == "databricks" or scheme == "databricks":
        return uri
    if not scheme or scheme == "file":
        raise ConfigError(
            f"mlflow.tracking_uri={uri!r}: the model registry needs a database store; use "
            "sqlite:///PATH/mlflow.db or an http(s):// tracking server"
        )
    if scheme not in DATABASE_SCHEMES + SERVER_SCHEMES:
        raise ConfigError(
            f"tracking URI {uri!r}: unknown scheme '{scheme}://'; use sqlite:///PATH/mlflow.db, "
            "http(s)://HOST:PORT (an MLflow server) or a database URL (postgresql://, mysql://)"
        )
    db = sqlite_path(uri)
    if must_exist and db is not None and not db.is_file():
        raise ConfigError(
            f"MLflow database {db} does not exist (tracking URI {uri}); check the path: "
            "nothing was created (train, evaluate or pipeline create it)"
        )
    if scheme in SERVER_SCHEMES:
        probe_server(uri)
    return uri


def probe_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """``ServiceError`` unless the MLflow server at ``uri`` answers HTTP within ``timeout``
    seconds (any status counts as an answer: a login page or 404 still means it is up)."""
    import urllib.error
    import urllib.request

    from textboost.errors import ServiceError

    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            reason = f"no answer within {timeout:g} s"
        raise ServiceError(
            f"MLflow tracking server {uri} is not reachable ({reason}); check that the server "
            "runs and the host, port and scheme of the URI"
        ) from None


def setup_mlflow(mlflow_cfg: MlflowConfig) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    import mlflow

    uri = check_tracking_uri(mlflow_cfg.tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    ensure_experiment(uri, mlflow_cfg.experiment, checked=True)
    exp = mlflow.set_experiment(mlflow_cfg.experiment)
    return exp.experiment_id


def connect_read_only(mlflow_cfg: MlflowConfig) -> str:
    """Point MLflow at an existing store, creating nothing (``registry list``/``promote``)."""
    import mlflow

    uri = check_tracking_uri(mlflow_cfg.tracking_uri, must_exist=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(tracking_uri: str, name: str, checked: bool = False) -> str:
    """The experiment's id, creating it if needed. On a sqlite store a new experiment keeps
    its artifacts next to the database (``<db dir>/mlartifacts``): MLflow's default,
    ``./mlruns`` of the current directory, would mix stores. A server decides for itself.
    The URI is checked first (``check_tracking_uri``) unless ``checked``."""
    from mlflow import MlflowClient

    if not checked:
        check_tracking_uri(tracking_uri)
    c = MlflowClient(tracking_uri=tracking_uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :]).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        location = (db.parent / "mlartifacts").as_uri()
    return c.create_experiment(name, artifact_location=location)


def client(mlflow_cfg: MlflowConfig):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_cfg.tracking_uri, registry_uri=mlflow_cfg.tracking_uri)


def log_summary(summary: dict) -> None:
    """Mean metrics of an evaluation summary as ``<method>.<metric>``, step = model index."""
    import mlflow

    steps = {label: i for i, label in enumerate(summary["models"])}
    for entry in summary["means"]:
        values = {
            f"{entry['method']}.{k}": float(v)
            for k, v in entry.items()
            if k not in ("model", "method") and isinstance(v, int | float) and math.isfinite(v)
        }
        mlflow.log_metrics(values, step=steps.get(entry["model"], 0))
    mlflow.log_metrics(
        {"seconds_per_image": summary["seconds_per_image"], "images": summary["images"]}
    )
    mlflow.set_tag(f"{TAG}lpips", summary["lpips"])


def __getattr__(name: str):
    """``pipeline.tracking.TextBoostCodec``: the class path that pyfunc models registered before
    the codec moved to ``pipeline.pyfunc`` store (MLflow unpickles it by that path)."""
    if name == "TextBoostCodec":
        from pipeline.pyfunc import TextBoostCodec

        return TextBoostCodec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
