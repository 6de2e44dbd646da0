"""Single-file model checkpoints (``model.pt``) for the codec, training and evaluation.

A checkpoint is a plain dict loadable with ``torch.load(weights_only=True)`` (no pickled code):
the state dict (including the entropy models' CDF buffers, refreshed by ``update(force=True)``
before saving), the model config, the resolved run config, the training shards' manifest
sha256, the training stage and the model identity that containers record. ``uri`` is a local
path, any fsspec URL (``memory://``, ``s3://``) or an MLflow model URI (``models:/NAME@ALIAS``,
``runs:/RUN_ID/PATH``): the artifacts are downloaded and the ``model.pt`` inside is loaded,
or ``zoo:NAME``, a model shipped in the package (``textboost.zoo``). Floating-point tensors
stored in fp16 or bf16 (zoo models) are loaded back as fp32.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from textboost.config import ModelConfig, section_from_dict, to_dict
from textboost.errors import CheckpointError, ConfigError
from textboost.model.textboost import TextBoost, build_model

FORMAT = "textboost-checkpoint"
FORMAT_VERSION = 1
FILENAME = "model.pt"


def save_checkpoint(
    path_or_url: str | os.PathLike,
    model: TextBoost,
    model_cfg: ModelConfig,
    run_cfg: dict | None = None,
    manifest_sha: str = "",
    stage: int = 1,
    extra: dict | None = None,
) -> str:
    """Write ``model`` (plain or DDP-wrapped) to ``path_or_url`` as one file; returns the
    model identity (hex). The live model is not modified."""
    import fsspec

    core = getattr(model, "module", model)
    if not isinstance(core, TextBoost):
        raise CheckpointError(
            f"save_checkpoint expects a TextBoost model, got {type(core).__name__}"
        )
    if to_dict(model_cfg) != to_dict(core.model_cfg):
        raise CheckpointError(
            f"model_cfg {to_dict(model_cfg)} does not describe the model being saved "
            f"({to_dict(core.model_cfg)})"
        )
    # Refresh the CDF tables on a CPU copy: the live model is left untouched (under DDP its
    # buffers must keep the same sizes on every rank).
    snapshot = build_model(model_cfg)
    snapshot.load_state_dict({k: v.detach().cpu() for k, v in core.state_dict().items()})
    with torch.no_grad():
        snapshot.update(force=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": to_dict(model_cfg),
        "run_config": run_cfg,
        "manifest_sha256": manifest_sha,
        "stage": int(stage),
        "model_identity": snapshot.identity(),
        "extra": extra or {},
        "state_dict": snapshot.state_dict(),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    url = os.fspath(path_or_url)
    if "://" not in url:  # local: write next to the target, then rename (atomic)
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{url}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, url)
    else:
        with fsspec.open(url, "wb") as f:
            f.write(buf.getvalue())
    return payload["model_identity"]


def resolve_checkpoint(uri: str | os.PathLike) -> str:
    """Local path or fsspec URL of the ``model.pt`` that ``uri`` names."""
    uri = os.fspath(uri)
    if uri.startswith("zoo:"):
        from textboost import zoo

        return zoo.resolve(uri)
    if uri.startswith(("models:/", "runs:/")):
        try:
            import mlflow

            local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
        except Exception as exc:  # MLflow raises many types (MlflowException, OSError, ...)
            raise CheckpointError(f"cannot download MLflow model {uri}: {exc}") from None
        uri = local
    if "://" not in uri and os.path.isdir(uri):
        found = sorted(Path(uri).rglob(FILENAME))
        if not found:
            raise CheckpointError(f"no {FILENAME} under {uri}: is this a TextBoost model?")
        return str(found[0])
    return uri


def load_checkpoint(uri: str | os.PathLike, map_location: str = "cpu") -> tuple[TextBoost, dict]:
    """Load a checkpoint: ``(model in eval mode, meta)``; a foreign or corrupt file raises
    ``CheckpointError``. ``meta`` holds every payload entry except the state dict, plus
    ``path``."""
    import fsspec

    path = resolve_checkpoint(uri)
    try:
        with fsspec.open(path, "rb") as f:
            data = f.read()
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        # torch's message advises weights_only=False (arbitrary code execution): never relayed
        if data[:4] != b"PK\x03\x04":
            why = f"not a torch checkpoint file (it starts with {data[:8]!r})"
        elif isinstance(exc, pickle.UnpicklingError):
            why = "a torch file holding more than tensors and plain data (refused unread)"
        else:
            why = "a damaged or truncated torch file"
        raise CheckpointError(
            f"{path} is not a TextBoost checkpoint: {why}; give a model.pt written by textboost, "
            "an MLflow model URI or zoo:NAME"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a TextBoost checkpoint (no '{FORMAT}' tag)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('format_version')} is not "
            f"supported (this software reads {FORMAT_VERSION})"
        )
    try:
        model_cfg = section_from_dict(ModelConfig, payload["model_config"])
        model = build_model(model_cfg)
        half = (torch.float16, torch.bfloat16)  # zoo files: fp16 weights, loaded as fp32
        state = {
            k: v.float() if isinstance(v, torch.Tensor) and v.dtype in half else v
            for k, v in payload["state_dict"].items()
        }
        model.load_state_dict(state)
    except (AttributeError, ConfigError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the recorded model config: {exc}"
        ) from None
    model.to(map_location).eval()
    model.mark_updated()  # use the saved CDF tables: identical on every machine
    identity = model.identity()
    if payload.get("model_identity") != identity:
        raise CheckpointError(
            f"{path}: weights are damaged: identity {identity} differs from the recorded "
            f"{payload.get('model_identity')}"
        )
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    meta["path"] = path
    return model, meta
