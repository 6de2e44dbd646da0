"""Loading a config: YAML files and ``key=value`` overrides merged strictly into the schema
(``load_config``), stored config dicts back into sections (``section_from_dict``), YAML out."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from textboost.config.sections import TextBoostConfig
from textboost.errors import ConfigError

# Keys that were removed from the schema, with where the setting lives now. Stored configs
# (checkpoints, the shipped zoo weights, shard manifests) written before the removal still
# carry them: ``section_from_dict`` drops exactly these keys, so old artefacts load; a YAML
# file or an override that sets one is refused, naming the replacement.
REMOVED_KEYS = {
    "shards.fail_once_marker": "test-only: env TEXTBOOST_FAULT_SHARD_ONCE (pipeline.faults)",
    "train.fail_at_step": "test-only: env TEXTBOOST_FAULT_TRAIN_STEP (pipeline.faults)",
}


def _allowed_keys(schema: DictConfig, dotted: str) -> list[str]:
    node: Any = schema
    for part in [p for p in dotted.split(".")[:-1] if p]:
        if not isinstance(node, DictConfig) or part not in node:
            break
        node = node[part]
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def _explain(exc: OmegaConfBaseException, schema: DictConfig, origin: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or ""
    msg = str(exc).splitlines()[0]
    if "not in struct" in msg or "Key '" in msg and "not" in msg:
        if key in REMOVED_KEYS:
            return ConfigError(f"{origin}: config key '{key}' was removed; {REMOVED_KEYS[key]}")
        allowed = _allowed_keys(schema, key)
        return ConfigError(
            f"{origin}: unknown config key '{key}'. Allowed keys here: {', '.join(allowed)}"
        )
    return ConfigError(f"{origin}: invalid value for '{key}': {msg}")


def _yaml_problem(exc: Exception) -> str:
    """One line from a PyYAML error: the problem and where it is."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{problem}{where}"


def _read_yaml(path: Path) -> DictConfig:
    """A YAML config file as a ``DictConfig``; unreadable, non-UTF-8, invalid YAML (syntax,
    duplicate keys) or a top level that is not a mapping raise ``ConfigError``."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        top = yaml.safe_load(text)  # the kind of the top level (OmegaConf asserts on scalars)
        if top is None:  # an empty file
            return OmegaConf.create({})
        if not isinstance(top, dict):
            kind = "list" if isinstance(top, list) else f"single value ({type(top).__name__})"
            raise ConfigError(
                f"{path}: the top level must be a mapping of sections (workdir:, data:, "
                f"train:, ...), not a {kind}"
            )
        return OmegaConf.create(text)  # OmegaConf's own loader: also refuses duplicate keys
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> TextBoostConfig:
    """Load a YAML file and ``key=value`` overrides strictly into ``TextBoostConfig``."""
    schema = OmegaConf.structured(TextBoostConfig)
    merged = schema
    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file {path} does not exist")
            merged = OmegaConf.merge(merged, _read_yaml(path))
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"overrides must look like key=value, got {bad}")
            try:
                dotlist = OmegaConf.from_dotlist(list(overrides))
            except yaml.YAMLError as exc:
                raise ConfigError(f"overrides {list(overrides)}: {_yaml_problem(exc)}") from None
            merged = OmegaConf.merge(merged, dotlist)
        OmegaConf.resolve(merged)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise _explain(exc, schema, str(path or "overrides")) from None
    except ConfigError as exc:
        if str(exc).startswith(str(path)) or path is None:
            raise
        raise ConfigError(f"{path}: {exc}") from None
    assert isinstance(cfg, TextBoostConfig)
    return cfg


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def _without_removed(cls: Any, data: Any, prefix: str) -> Any:
    """``data`` (a stored config dict for ``cls``) without the ``REMOVED_KEYS``, recursively."""
    if not (dataclasses.is_dataclass(cls) and isinstance(data, dict)):
        return data
    hints = typing.get_type_hints(cls)
    return {
        k: _without_removed(hints.get(k), v, f"{prefix}{k}.")
        for k, v in data.items()
        if f"{prefix}{k}" not in REMOVED_KEYS
    }


def section_from_dict(cls: type, data: dict) -> Any:
    """Rebuild a config section (e.g. ``ModelConfig``) from a dict, strictly (only the
    ``REMOVED_KEYS`` of older stored configs are dropped)."""
    sections = {t: f"{name}." for name, t in typing.get_type_hints(TextBoostConfig).items()}
    data = _without_removed(cls, data, sections.get(cls, ""))
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))
    except OmegaConfBaseException as exc:
        raise _explain(exc, OmegaConf.structured(cls), cls.__name__) from None
