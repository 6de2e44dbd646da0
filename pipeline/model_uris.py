"""Model URIs checked early, in the driver: models:/, runs:/, zoo: and paths exist."""

from __future__ import annotations

from pipeline.tracking import check_tracking_uri
from textboost.errors import CheckpointError, TextBoostError

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
