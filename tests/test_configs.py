"""Every shipped config loads strictly; the paper configs hold the paper's settings (5.1.4).

Also checks the strict loader's error messages: unknown keys name their dotted path and the
keys allowed there, wrong types name the key and the value.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from textboost.config import TextBoostConfig, config_hash, load_config
from textboost.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
PAPER = ROOT / "configs" / "paper"


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def test_the_repository_ships_quickstart_and_paper_configs() -> None:
    names = {str(p.relative_to(ROOT / "configs")) for p in CONFIGS}
    assert "quickstart.yaml" in names
    expected = {"stage1_imagenet", "stage2_textocr", "eval_textocr", "eval_icdar2015"}
    assert {f"paper/{n}.yaml" for n in expected} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=_ids(CONFIGS))
def test_every_config_loads_strictly(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, TextBoostConfig)
    # Loading is deterministic: the same file gives the same hash.
    assert config_hash(cfg) == config_hash(load_config(path))


def test_stage1_imagenet_matches_the_paper() -> None:
    cfg = load_config(PAPER / "stage1_imagenet.yaml")
    assert cfg.data.train.kind == "imagenet"
    assert cfg.data.train.images.startswith("s3://")
    assert cfg.model.backbone == "elic"
    assert (cfg.model.N, cfg.model.M, cfg.model.fusion_channels) == (192, 320, 13)
    assert cfg.train.stage == 1
    assert cfg.train.lr == pytest.approx(1e-4)  # Adam, lr 1e-4
    assert cfg.train.batch_size == 32
    assert cfg.train.crop_size == 256
    assert cfg.train.epochs == 1000
    assert cfg.data.filter.t_train == 150.0
    assert cfg.train.shards == cfg.shards.out  # trains on the shards this config builds


def test_stage2_textocr_matches_the_paper() -> None:
    cfg = load_config(PAPER / "stage2_textocr.yaml")
    stage1 = load_config(PAPER / "stage1_imagenet.yaml")
    assert cfg.data.train.kind == "textocr"
    assert cfg.data.train.annotations.endswith("TextOCR_0.1_train.json")
    assert cfg.train.stage == 2
    assert cfg.train.epochs == 20
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.train.alpha == 10.0
    assert cfg.data.filter.t_train == 150.0
    assert cfg.data.filter.t_test == 800.0
    assert cfg.train.init_checkpoint, "stage 2 starts from the stage-1 model"
    # Stage 2 keeps the stage-1 model and lambda (paper 4.3: lambda kept for the gradients).
    assert cfg.model == stage1.model
    assert cfg.train.lmbda == stage1.train.lmbda
    assert cfg.shards.out != stage1.shards.out


@pytest.mark.parametrize(
    ("name", "kind", "annotations_end"),
    [
        ("eval_textocr.yaml", "textocr", "TextOCR_0.1_val.json"),
        ("eval_icdar2015.yaml", "icdar2015", "Challenge4_Test_Task1_GT"),
    ],
)
def test_eval_configs_match_the_paper(name: str, kind: str, annotations_end: str) -> None:
    cfg = load_config(PAPER / name)
    assert cfg.eval.dataset.kind == kind
    assert cfg.eval.dataset.annotations.endswith(annotations_end)
    assert cfg.data.filter.t_test == 800.0
    assert cfg.eval.limit == 0  # the whole split
    assert "backbone" in cfg.eval.baselines and "jpeg" in cfg.eval.baselines
    assert cfg.eval.models and cfg.eval.models[0].startswith("models:/")
    assert cfg.model == load_config(PAPER / "stage2_textocr.yaml").model


def test_quickstart_is_sized_for_a_two_core_cpu() -> None:
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    assert cfg.model.backbone == "hyperprior"
    assert cfg.model.N <= 64 and cfg.model.M <= 96
    assert cfg.data.synth.max_side <= 512
    assert 16 <= cfg.data.synth.images <= 64
    assert not cfg.train.use_gpu
    assert cfg.train.num_workers <= 2
    assert cfg.ray.address == ""  # embedded Ray
    assert cfg.mlflow.tracking_uri.startswith("sqlite:///")
    assert 24 <= cfg.eval.limit <= 32  # enough words for F1 to mean something
    assert cfg.pipeline.stages == ["data", "shards", "stage1", "stage2", "evaluate", "register"]
    # starts from a shipped zoo model of the same architecture (a short fine-tune)
    from textboost import zoo

    name = cfg.train.init_checkpoint.removeprefix("zoo:")
    assert cfg.train.init_checkpoint.startswith("zoo:") and name in zoo.names()
    from textboost.config import FUSION_KEYS, ModelConfig, section_from_dict

    card = section_from_dict(ModelConfig, zoo.card(name)["model_config"])  # later keys: defaults
    backbone = lambda m: {k: v for k, v in vars(m).items() if k not in FUSION_KEYS}  # noqa: E731
    assert backbone(card) == backbone(cfg.model)  # stage 2 swaps the fusion block


# --- strict loading: the error names the key, the allowed keys, the bad value ---------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_unknown_nested_key_names_its_dotted_path_and_the_allowed_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "train.lrr" in msg
    assert str(path) in msg
    for allowed in ("lr", "alpha", "batch_size", "crop_size"):
        assert allowed in msg


def test_unknown_deeply_nested_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "data:\n  train:\n    kindd: textocr\n")
    with pytest.raises(ConfigError, match=r"data\.train\.kindd") as info:
        load_config(path)
    assert "annotations" in str(info.value) and "images" in str(info.value)


def test_unknown_top_level_key_lists_the_sections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trian") as info:
        load_config(_write(tmp_path, "trian:\n  lr: 0.1\n"))
    for section in ("data", "shards", "model", "train", "eval", "mlflow", "ray"):
        assert section in str(info.value)


def test_wrong_type_names_the_key_and_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.epochs") as info:
        load_config(_write(tmp_path, "train:\n  epochs: many\n"))
    assert "many" in str(info.value)


def test_wrong_type_in_an_override() -> None:
    with pytest.raises(ConfigError, match=r"train\.use_gpu"):
        load_config(ROOT / "configs" / "quickstart.yaml", ["train.use_gpu=maybe"])


def test_unknown_key_in_an_override() -> None:
    with pytest.raises(ConfigError, match=r"model\.depth"):
        load_config(ROOT / "configs" / "quickstart.yaml", ["model.depth=3"])


def test_value_outside_the_allowed_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.backbone.*elic"):
        load_config(_write(tmp_path, "model:\n  backbone: vgg\n"))


def test_unknown_pipeline_stage_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.stages.*stage1"):
        load_config(None, ["pipeline.stages=[data,stage3]"])


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_paper_configs_chain_on_an_alias_every_training_run_sets() -> None:
    """Stage 2 starts from what stage 1 registers and the evaluations read what stage 2
    registers: ``@trained``, set by every successful run with ``train.register``; never
    ``@champion``, which moves only within ``mlflow.bpp_budget`` and may never exist."""
    from pipeline.registry import TRAINED

    s1 = load_config(PAPER / "stage1_imagenet.yaml")
    s2 = load_config(PAPER / "stage2_textocr.yaml")
    assert s1.train.register and s2.train.register
    assert s2.train.init_checkpoint == f"models:/{s1.mlflow.registered_model}@{TRAINED}"
    registers = []
    for name in ("eval_textocr", "eval_icdar2015"):
        ev = load_config(PAPER / f"{name}.yaml")
        assert ev.eval.models == [f"models:/{s2.mlflow.registered_model}@{TRAINED}"]
        assert ev.mlflow.tracking_uri == s2.mlflow.tracking_uri
        assert ev.mlflow.registered_model == s2.mlflow.registered_model
        registers.append(ev.eval.register)
    assert registers == [True, False]  # champion is decided on TextOCR val only


def test_stored_configs_with_removed_keys_still_load() -> None:
    """Checkpoints, zoo weights and shard manifests written before the fault-injection keys
    left the schema carry them: ``section_from_dict`` drops exactly ``REMOVED_KEYS``."""
    from textboost.config import REMOVED_KEYS, ShardsConfig, TrainConfig, section_from_dict, to_dict

    assert set(REMOVED_KEYS) == {"shards.fail_once_marker", "train.fail_at_step"}
    new = load_config(None, [])
    old = to_dict(new)
    old["shards"]["fail_once_marker"] = "/tmp/marker"
    old["train"]["fail_at_step"] = 3
    assert section_from_dict(TextBoostConfig, old) == new
    assert section_from_dict(TrainConfig, old["train"]) == new.train
    assert section_from_dict(ShardsConfig, old["shards"]) == new.shards
    with pytest.raises(ConfigError, match="fail_at_step"):  # only in its own section
        section_from_dict(ShardsConfig, {**old["shards"], "fail_at_step": 3})
    with pytest.raises(ConfigError, match="unknown config key 'depth'"):
        section_from_dict(TrainConfig, {**old["train"], "depth": 3})


@pytest.mark.parametrize(
    "path", ["models/higher-rate/hp-mid.pt", "textboost/zoo/weights/hp-xlow.pt"]
)
def test_the_shipped_zoo_checkpoints_run_configs_load(path: str) -> None:
    import torch

    from textboost.config import section_from_dict

    payload = torch.load(ROOT / path, weights_only=True)
    assert "fail_at_step" in payload["run_config"]["train"]  # written before the removal
    cfg = section_from_dict(TextBoostConfig, payload["run_config"])
    assert cfg.train.stage == payload["stage"]


def test_a_removed_key_in_a_config_file_names_its_replacement(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.fail_at_step' was removed.*TEXTBOOST_FAULT"):
        load_config(_write(tmp_path, "train:\n  fail_at_step: 3\n"))
    with pytest.raises(ConfigError, match="TEXTBOOST_FAULT_SHARD_ONCE"):
        load_config(None, ["shards.fail_once_marker=/tmp/x"])
