"""One typed config for the whole pipeline.

YAML files and ``key=value`` overrides are merged into the structured schema; unknown keys
and wrong types fail early with the dotted key path and the allowed keys. Each part of the
pipeline receives only its own section. Every numeric value is checked in one place, the
sections' ``__post_init__`` (run by ``load_config``, before Ray or MLflow start): finite and
in range, with the dotted key and the allowed range in the message.

- ``sections``: the sections (``DataConfig``, ``ShardsConfig``, ``TrainConfig``,
  ``EvalConfig``, ...) and the whole ``TextBoostConfig``;
- ``model``: the ``model`` section (``ModelConfig``) and the model keys added after models
  shipped (``LATER_MODEL_KEYS``);
- ``checks``: the value checks every section runs (``check_choice``, ``check_range``);
- ``loading``: ``load_config`` (YAML + overrides), ``section_from_dict`` (stored configs),
  ``to_yaml``, ``REMOVED_KEYS``;
- ``hashing``: ``to_dict``, ``config_hash``, ``model_key`` (model identity), ``train_key``.

Import the names from ``textboost.config``.
"""

from __future__ import annotations

from textboost.config.hashing import (
    config_hash,
    drop_later_defaults,
    flatten,
    model_key,
    to_dict,
    train_key,
)
from textboost.config.loading import REMOVED_KEYS, load_config, section_from_dict, to_yaml
from textboost.config.model import (
    BACKBONES,
    BASELINE_MODEL_KEYS,
    FUSION_KEYS,
    FUSIONS,
    LATER_MODEL_KEYS,
    MAX_CHANNELS,
    MODEL_KINDS,
    TCM_DEFAULTS,
    TEXT_ENCODERS,
    ModelConfig,
)
from textboost.config.sections import (
    BASELINES,
    MAX_IMAGE_SIDE,
    MAX_SYNTH_WORDS,
    PIPELINE_STAGES,
    SOURCE_KINDS,
    DataConfig,
    EvalConfig,
    FilterConfig,
    MlflowConfig,
    PipelineConfig,
    RayConfig,
    ShardsConfig,
    SourceConfig,
    SynthConfig,
    TextBoostConfig,
    TrainConfig,
)
from textboost.errors import ConfigError

__all__ = [
    "BACKBONES", "BASELINES", "BASELINE_MODEL_KEYS", "FUSIONS", "FUSION_KEYS",
    "LATER_MODEL_KEYS", "MAX_CHANNELS", "MAX_IMAGE_SIDE", "MAX_SYNTH_WORDS", "MODEL_KINDS",
    "PIPELINE_STAGES", "REMOVED_KEYS", "SOURCE_KINDS", "TCM_DEFAULTS", "TEXT_ENCODERS",
    "ConfigError", "DataConfig", "EvalConfig", "FilterConfig", "MlflowConfig", "ModelConfig",
    "PipelineConfig", "RayConfig", "ShardsConfig", "SourceConfig", "SynthConfig",
    "TextBoostConfig", "TrainConfig", "config_hash", "drop_later_defaults", "flatten",
    "load_config", "model_key", "section_from_dict", "to_dict", "to_yaml", "train_key",
]  # fmt: skip
