"""Plain dicts of configs and what is hashed from them: ``config_hash``, the model identity
keys (``model_key``) and the pipeline stage keys (``train_key``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from textboost.canonical import sha256_json
from textboost.config.model import LATER_MODEL_KEYS


def to_dict(cfg: Any) -> dict:
    """Plain dict of a (section of a) config."""
    return dataclasses.asdict(cfg)


def model_key(model_cfg: Any, later: dict | None = None) -> dict:
    """``to_dict(model_cfg)`` without the keys of ``later`` (default ``LATER_MODEL_KEYS``)
    that hold their default: what identifies a model (``TextBoost.identity``; pipeline stage
    keys use ``BASELINE_MODEL_KEYS``), so models made before those keys keep their identity."""
    return drop_later_defaults(to_dict(model_cfg), later)


def drop_later_defaults(model_dict: dict, later: dict | None = None) -> dict:
    """``model_dict`` (a model config as a dict) without the keys of ``later`` (default
    ``LATER_MODEL_KEYS``) that hold their default."""
    out = dict(model_dict)
    for key, default in (LATER_MODEL_KEYS if later is None else later).items():
        if key in out and out[key] == default:
            del out[key]
    return out


def train_key(train_cfg: Any) -> dict:
    """``to_dict(train_cfg)`` without ``roi_weight`` at its default (pipeline stage keys)."""
    out = to_dict(train_cfg)
    if out.get("roi_weight") == 4.0:
        del out["roi_weight"]
    return out


def config_hash(cfg: Any) -> str:
    """sha256 of the canonical JSON of a config (section); stable across processes."""
    return sha256_json(to_dict(cfg))


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` (for MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
