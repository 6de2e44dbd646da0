"""MLflow: tracking setup, the codec as a pyfunc model, the model registry and its aliases.

- ``setup_mlflow(mlflow_cfg)``: tracking + registry URI (default ``sqlite:///<workdir>/mlflow.db``,
  a database store, which the registry needs) and the experiment.
- ``TextBoostCodec``: an MLflow pyfunc around one ``model.pt`` checkpoint. ``predict`` takes a
  DataFrame and ``params={"mode": "compress" | "decompress"}``: compress reads column
  ``image`` (PNG/JPEG bytes) and optional ``words`` (JSON list of ``Word.to_json()``; without
  it RapidOCR finds the words) and returns column ``container`` (``.tbx`` bytes); decompress
  reads ``container`` and returns ``image`` (PNG bytes, written exactly as
  ``textboost decompress`` writes its file). ``unwrap_python_model()`` gives the instance, with
  ``compress(image, words)`` and ``decompress(data)`` methods.
- ``log_codec_model``: logs it (``log_model(name=...)``, MLflow 3) with the checkpoint as
  artifact ``model.pt`` and registers a new version.
- Aliases, not stages: ``trained`` marks the newest version registered by a training run
  (``train.register``; always set, whatever its rate); ``candidate`` marks the newest
  evaluated version (always set by an evaluation that registers); ``champion`` moves only when
  the candidate beats the champion on ``mlflow.champion_metric`` within ``mlflow.bpp_budget``
  on the same evaluation set (``maybe_promote``), so it may never exist for a rate point
  above the budget. Pipelines chain on ``trained``/``candidate``; consumers use ``champion``.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from textboost.canonical import sha256_json
from textboost.config import MlflowConfig
from textboost.errors import CheckpointError, ConfigError, TextBoostError

TAG = "textboost."  # tag prefix shared with pipeline/training.py
CANDIDATE, CHAMPION = "candidate", "champion"
TRAINED = "trained"  # set by a training run with train.register: its final checkpoint
MODES = ("compress", "decompress")
PIP_PACKAGES = ("torch", "compressai", "numpy", "pillow", "shapely", "rapidocr-onnxruntime")


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
    timeouts and retries for MLflow's HTTP client (``textboost.cli.NETWORK_DEFAULTS``).
    """
    from textboost.cli import apply_network_defaults

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


# ---------------------------------------------------------------- the pyfunc


class TextBoostCodec(PythonModel):
    """TextBoost codec as an MLflow pyfunc (see the module docstring for the data contract)."""

    def load_context(self, context) -> None:
        from textboost.checkpoint import load_checkpoint

        cfg = dict(getattr(context, "model_config", None) or {})
        self.t_test = float(cfg.get("t_test", 800.0))
        self.side_info_format = str(cfg.get("side_info_format", "compact"))
        self.model, self.meta = load_checkpoint(context.artifacts["checkpoint"])

    def compress(self, image, words=None) -> bytes:
        """PIL image (+ optional ``Word`` list; None: RapidOCR) -> container bytes."""
        from textboost.codec import encode_image, to_rgb8
        from textboost.filtering import filter_words

        image = to_rgb8(image)
        if words is None:
            from pipeline.sample_words import ocr_words

            words = ocr_words(image)
        kept, _ = filter_words(words, self.t_test)
        return encode_image(self.model, image, kept, self.side_info_format)

    def decompress(self, data: bytes):
        """Container bytes -> PIL image."""
        from textboost.codec import decode_container

        return decode_container(self.model, bytes(data))

    def predict(
        self, context, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        mode = (params or {}).get("mode", "compress")
        if mode not in MODES:
            raise ConfigError(f"pyfunc params mode={mode!r}; choose one of {list(MODES)}")
        rows = model_input.to_dict(orient="records")
        if mode == "decompress":
            return pd.DataFrame(
                {"image": [png_bytes(self.decompress(r["container"])) for r in rows]}
            )
        out = []
        for r in rows:
            words = _words_from_json(r.get("words"))
            out.append(self.compress(_open_image(r["image"]), words))
        return pd.DataFrame({"container": out})


def png_bytes(image) -> bytes:
    """PNG bytes with the settings of ``textboost decompress`` (Pillow's defaults)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _open_image(data: bytes):
    """Untrusted image bytes as 8-bit RGB: pixel limit from the header, high bit depths
    scaled (``textboost.codec.open_image``); anything else raises ``ImageError``."""
    from textboost.codec import open_image

    return open_image(bytes(data), name="pyfunc input column 'image'")


def _words_from_json(value: Any):
    from textboost.errors import AnnotationError
    from textboost.words import Word

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        items = json.loads(value) if isinstance(value, str | bytes) else value
        return [Word.from_json(w) for w in items]
    except (ValueError, TypeError, KeyError) as exc:
        raise AnnotationError(
            f"pyfunc input column 'words' must be a JSON list of Word.to_json() records: {exc}"
        ) from None


def codec_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema(
        [
            ColSpec("binary", "image", required=False),
            ColSpec("string", "words", required=False),
            ColSpec("binary", "container", required=False),
        ]
    )
    outputs = Schema(
        [ColSpec("binary", "container", required=False), ColSpec("binary", "image", required=False)]
    )
    return ModelSignature(inputs, outputs, ParamSchema([ParamSpec("mode", "string", "compress")]))


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in PIP_PACKAGES:
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def log_codec_model(
    checkpoint: str,
    name: str,
    registered_model: str | None,
    model_config: dict | None = None,
    tags: dict | None = None,
):
    """Log ``checkpoint`` as a pyfunc in the active run (artifact ``model.pt``) and register it.

    Returns MLflow's ``ModelInfo`` (``registered_model_version`` set when registered).
    """
    import mlflow.pyfunc

    from textboost.checkpoint import FILENAME, resolve_checkpoint

    src = resolve_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, FILENAME)  # the file inside the model must be model.pt
        if "://" in src:
            import fsspec

            with fsspec.open(src, "rb") as f, open(local, "wb") as g:
                shutil.copyfileobj(f, g)
        else:
            shutil.copyfile(src, local)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=TextBoostCodec(),
            artifacts={"checkpoint": local},
            signature=codec_signature(),
            model_config=model_config or {},
            registered_model_name=registered_model,
            pip_requirements=_pip_requirements(),
            tags=tags,
        )


# ---------------------------------------------------------------- registry and aliases


def tag_version(mlflow_cfg: MlflowConfig, version: str, tags: dict) -> None:
    c = client(mlflow_cfg)
    for k, v in tags.items():
        c.set_model_version_tag(mlflow_cfg.registered_model, str(version), k, str(v))


def version_by_alias(mlflow_cfg: MlflowConfig, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client(mlflow_cfg).get_model_version_by_alias(mlflow_cfg.registered_model, alias)
    except MlflowException:
        return None


def _score(tags: dict, metric: str) -> float | None:
    raw = tags.get(f"{TAG}metric.{metric}")
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def champion_decision(
    candidate_tags: dict, champion_tags: dict | None, cfg: MlflowConfig
) -> tuple[bool, str]:
    """(move champion?, why): the candidate must fit the bpp budget and beat the champion's
    ``champion_metric`` measured on the same evaluation set."""
    metric = cfg.champion_metric
    cand, bpp = _score(candidate_tags, metric), _score(candidate_tags, "bpp")
    if cand is None or bpp is None:
        return False, f"candidate has no {metric} / bpp recorded"
    if bpp > cfg.bpp_budget:
        return False, f"candidate bpp {bpp:.5f} exceeds mlflow.bpp_budget {cfg.bpp_budget}"
    if champion_tags is None:
        return True, "no champion yet"
    key = f"{TAG}eval_fingerprint"
    if champion_tags.get(key) != candidate_tags.get(key):
        return False, "champion was evaluated on another set: not comparable (promote by hand)"
    champ = _score(champion_tags, metric)
    if champ is None or cand > champ:
        return True, f"{metric} {cand:.4f} > champion's {champ if champ is not None else 'n/a'}"
    return False, f"{metric} {cand:.4f} does not beat the champion's {champ:.4f}"


def maybe_promote(mlflow_cfg: MlflowConfig, version: str) -> dict:
    """Give ``version`` the candidate alias; move champion when it wins (see above)."""
    c = client(mlflow_cfg)
    name = mlflow_cfg.registered_model
    c.set_registered_model_alias(name, CANDIDATE, str(version))
    cand = c.get_model_version(name, str(version))
    champ = version_by_alias(mlflow_cfg, CHAMPION)
    if champ is not None and str(champ.version) == str(version):
        return {"version": str(version), "champion": True, "reason": "already champion"}
    move, why = champion_decision(cand.tags, champ.tags if champ else None, mlflow_cfg)
    if move:
        c.set_registered_model_alias(name, CHAMPION, str(version))
    return {"version": str(version), "champion": move, "reason": why}


def promote(mlflow_cfg: MlflowConfig, version: str, alias: str = CHAMPION) -> None:
    """Set ``alias`` on ``version`` by hand (the registry CLI)."""
    from mlflow.exceptions import MlflowException

    c = client(mlflow_cfg)
    try:
        c.get_model_version(mlflow_cfg.registered_model, str(version))
    except MlflowException:
        raise ConfigError(
            f"{mlflow_cfg.registered_model} has no version {version!r} in "
            f"{mlflow_cfg.tracking_uri}; see `textboost registry list`"
        ) from None
    c.set_registered_model_alias(mlflow_cfg.registered_model, alias, str(version))


def list_versions(mlflow_cfg: MlflowConfig) -> list[dict]:
    """Registered versions, newest first: version, aliases, run id, key metrics."""
    from mlflow.exceptions import MlflowException

    c = client(mlflow_cfg)
    name = mlflow_cfg.registered_model
    try:
        aliases = dict(c.get_registered_model(name).aliases or {})
    except MlflowException:
        return []  # nothing registered under this name yet
    by_version: dict[str, list[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(str(v), []).append(alias)
    versions = c.search_model_versions(f"name = '{name}'")
    out = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        metrics = {
            k[len(f"{TAG}metric.") :]: val
            for k, val in v.tags.items()
            if k.startswith(f"{TAG}metric.")
        }
        out.append(
            {
                "version": str(v.version),
                "aliases": sorted(by_version.get(str(v.version), [])),
                "run_id": v.run_id,
                "created": v.creation_timestamp,
                "metrics": metrics,
            }
        )
    return out


# ---------------------------------------------------------------- evaluation runs


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


def version_tags(summary: dict, label: str, run_id: str) -> dict:
    """Registry tags of one evaluated model: its TextBoost metrics and its lineage."""
    meta = summary["model_meta"][label]
    point = next(m for m in summary["means"] if m["model"] == label and m["method"] == "textboost")
    tags = {
        f"{TAG}metric.{k}": v
        for k, v in point.items()
        if k not in ("model", "method") and isinstance(v, int | float) and math.isfinite(v)
    }
    tags.update(
        {
            f"{TAG}eval_fingerprint": summary["eval_fingerprint"],
            f"{TAG}eval_run_id": run_id,
            f"{TAG}model_identity": meta.get("model_identity") or "",
            f"{TAG}manifest_sha256": meta.get("manifest_sha256") or "",
            f"{TAG}config_hash": (
                sha256_json(meta["run_config"]) if meta.get("run_config") else ""
            ),
            f"{TAG}stage": meta.get("stage") if meta.get("stage") is not None else "",
            f"{TAG}source_checkpoint": meta["uri"],
        }
    )
    if str(meta["uri"]).startswith("zoo:"):  # which zoo file (the name alone may be re-exported)
        from textboost import zoo

        tags[f"{TAG}zoo_sha256"] = zoo.sha256(meta["uri"][len("zoo:") :])
    return tags


def registered_version(mlflow_cfg: MlflowConfig, uri: str) -> str | None:
    """The version of ``mlflow.registered_model`` that ``uri`` names (``models:/NAME@ALIAS``
    or ``models:/NAME/N``), or None for any other URI or another registered model."""
    if not uri.startswith(f"models:/{mlflow_cfg.registered_model}"):
        return None
    rest = uri[len(f"models:/{mlflow_cfg.registered_model}") :]
    if rest.startswith("/") and rest[1:].isdigit():
        return rest[1:]
    if rest.startswith("@"):
        v = version_by_alias(mlflow_cfg, rest[1:])
        return str(v.version) if v is not None else None
    return None


def register_evaluated(cfg, summary: dict) -> list[dict]:
    """Log each evaluated checkpoint as a pyfunc in the active run, register it, tag it, and
    apply the alias policy. A ``models:/`` URI of ``mlflow.registered_model`` itself (e.g. the
    ``@trained`` version of a training run) is not registered again: that version gets the
    evaluation's tags and the alias policy. Other ``models:/`` URIs are skipped. Returns one
    dict per version."""
    import mlflow

    run_id = mlflow.active_run().info.run_id
    out = []
    for label in summary["models"]:
        meta = summary["model_meta"][label]
        if meta["uri"].startswith("models:/"):
            version = registered_version(cfg.mlflow, meta["uri"])
            if version is not None:
                tag_version(cfg.mlflow, version, version_tags(summary, label, run_id))
                decision = maybe_promote(cfg.mlflow, version)
                out.append({"model": label, "model_uri": meta["uri"], **decision})
            continue
        info = log_codec_model(
            meta["uri"],
            name=f"codec-{label}".replace(".", "_"),  # MLflow model names reject "."
            registered_model=cfg.mlflow.registered_model,
            model_config={
                "t_test": cfg.data.filter.t_test,
                "side_info_format": cfg.shards.side_info_format,
            },
        )
        version = str(info.registered_model_version)
        tag_version(cfg.mlflow, version, version_tags(summary, label, run_id))
        decision = maybe_promote(cfg.mlflow, version)
        out.append({"model": label, "model_uri": info.model_uri, **decision})
    return out


def register_trained(mlflow_cfg: MlflowConfig, run_id: str, checkpoint: str, stage: int,
                     model_config: dict) -> dict:  # fmt: skip
    """Log a training run's final checkpoint as a pyfunc codec in that run, register it in
    ``mlflow.registered_model`` and point the alias ``trained`` at it (whatever its rate: the
    next stage or the evaluation needs the model that was trained, not one that met the bpp
    budget). Returns ``{"version", "uri"}``."""
    import mlflow

    uri = mlflow_cfg.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with mlflow.start_run(run_id=run_id):
        info = log_codec_model(
            checkpoint, name="codec", registered_model=mlflow_cfg.registered_model,
            model_config=model_config,
        )  # fmt: skip
    version = str(info.registered_model_version)
    tag_version(mlflow_cfg, version, {f"{TAG}train_run_id": run_id, f"{TAG}stage": stage})
    client(mlflow_cfg).set_registered_model_alias(mlflow_cfg.registered_model, TRAINED, version)
    return {"version": version, "uri": f"models:/{mlflow_cfg.registered_model}@{TRAINED}"}


# ---------------------------------------------------------------- model URIs, checked early

MAX_LISTED = 12  # names / aliases / versions quoted in an error message


def _listing(items, empty: str) -> str:
    items = [str(i) for i in items]
    if not items:
        return empty
    more = f", ... ({len(items)} in all)" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def check_model_uris(uris: list[str], tracking_uri: str, what: str = "model") -> None:
    """Fail once, in the driver, before any Ray worker starts, unless every URI names a
    model that exists: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (``latest`` too),
    ``runs:/RUN_ID/PATH``, ``zoo:NAME``, a local path or an fsspec URL. The ``CheckpointError``
    is one line that names the URI and what the registry (or zoo, or run) holds. Only
    ``models:/`` and ``runs:/`` URIs touch MLflow (at ``tracking_uri``); nothing is
    downloaded."""
    for uri in uris:
        uri = str(uri)
        if uri.startswith("zoo:"):
            from textboost import zoo

            try:
                zoo.resolve(uri)
            except TextBoostError as exc:
                raise type(exc)(f"{what} {uri}: {exc}") from None
        elif uri.startswith(("models:/", "runs:/")):
            _check_mlflow_uri(uri, tracking_uri, what)
        else:
            _check_path(uri, what)


def _check_path(uri: str, what: str) -> None:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri)
        found = fs.exists(path)
    except (ImportError, OSError, ValueError) as exc:
        raise CheckpointError(f"{what} {uri}: cannot be checked ({exc})") from None
    if not found:
        raise CheckpointError(
            f"{what} {uri} does not exist; give a model.pt path, an MLflow model URI "
            "(models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH) or zoo:NAME"
        )


def _check_mlflow_uri(uri: str, tracking_uri: str, what: str) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    check_tracking_uri(tracking_uri, must_exist=True)
    c = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    where = f"the registry at {tracking_uri}"
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/") :].partition("/")
        try:
            c.get_run(run_id)
        except MlflowException:
            raise CheckpointError(f"{what} {uri}: no run {run_id!r} in {where}") from None
        parent = path.rstrip("/").rpartition("/")[0] or None
        try:
            listed = [a.path for a in c.list_artifacts(run_id, parent)]
        except (MlflowException, OSError) as exc:
            raise CheckpointError(
                f"{what} {uri}: cannot list the run's artifacts ({exc})"
            ) from None
        if path and path.rstrip("/") not in listed:
            raise CheckpointError(
                f"{what} {uri}: run {run_id} has no artifact {path!r}; it has: "
                f"{_listing(listed, 'no artifacts')}"
            )
        return
    rest = uri[len("models:/") :]
    if "@" in rest:
        name, alias, version = *rest.split("@", 1), None
    else:
        name, _, version = rest.partition("/")
        alias = None
    try:
        model = c.get_registered_model(name)
    except MlflowException:
        try:
            names = [m.name for m in c.search_registered_models(max_results=100)]
        except MlflowException:
            names = []
        raise CheckpointError(
            f"{what} {uri}: no registered model {name!r} in {where}; registered models: "
            f"{_listing(sorted(names), 'none')}"
        ) from None
    aliases = dict(model.aliases or {})
    versions = sorted(
        (int(v.version) for v in c.search_model_versions(f"name = '{name}'")), reverse=True
    )
    holds = (
        f"{name} has aliases {_listing([f'@{a} (v{v})' for a, v in sorted(aliases.items())], 'none')}"
        f" and versions {_listing(versions, 'none')}"
    )
    if alias is not None and alias not in aliases:
        raise CheckpointError(f"{what} {uri}: no alias @{alias} in {where}; {holds}")
    if alias is None:
        if not version or (version.isdigit() and int(version) not in versions):
            raise CheckpointError(f"{what} {uri}: no version {version!r} in {where}; {holds}")
        if not version.isdigit() and (version.lower() != "latest" or not versions):
            raise CheckpointError(f"{what} {uri}: no version {version!r} in {where}; {holds}")
