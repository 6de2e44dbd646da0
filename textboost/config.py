"""One typed config for the whole pipeline.

YAML files and ``key=value`` overrides are merged into the structured schema below; unknown
keys and wrong types fail early with the dotted key path and the allowed keys. Each part of
the pipeline receives only its own section. Every numeric value is checked in one place, the
sections' ``__post_init__`` (run by ``load_config``, before Ray or MLflow start): finite and
in range, with the dotted key and the allowed range in the message.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from textboost.canonical import sha256_json
from textboost.errors import ConfigError

SOURCE_KINDS = ("synthetic", "textocr", "icdar2015", "imagenet", "folder", "shards")
BACKBONES = ("elic", "hyperprior", "tcm")
TCM_DEFAULTS = {"tcm_slices": 5, "tcm_window": 8}  # hashed into a model identity only when changed
FUSIONS = ("paper", "colour")
# overlay: the no-learning use of a colour container's side info (colour models only)
BASELINES = ("jpeg", "webp", "backbone", "overlay", "avif", "avif_min", "avif_half")
FUSION_KEYS = (
    "fusion", "fusion_channels", "fusion_gated", "fusion_gate_radius", "fusion_width",
    "fusion_refine",
)  # fmt: skip
# model.kind: textboost (paper: fusion block at the decoder), or one of the paper's comparison
# baselines (5.2.5 ELIC-ROI; TACO, arXiv 2403.02944), encoder-side only, trained in stage 1
MODEL_KINDS = ("textboost", "roi", "taco_style")
TEXT_ENCODERS = ("small", "clip")
# Model keys added after models were shipped: hashed (model identity, pipeline stage keys)
# only when they differ from these defaults, so earlier models keep their identity.
BASELINE_MODEL_KEYS = {
    "kind": "textboost", "text_encoder": "small", "clip_weights": "", "clip_arch": "ViT-B-32",
    "text_dim": 64,
}  # fmt: skip
LATER_MODEL_KEYS = {"fusion_refine": 0, **TCM_DEFAULTS, **BASELINE_MODEL_KEYS}
MAX_IMAGE_SIDE = 1 << 15  # as textboost.container.MAX_SIDE
MAX_SYNTH_WORDS = 4096
MAX_CHANNELS = 4096


@dataclass
class SynthConfig:
    """Synthetic scene-text set (the data every test, demo and benchmark uses)."""

    images: int = 32
    seed: int = 0
    format: str = "textocr"  # textocr | icdar2015
    max_side: int = 1024  # long side of the generated images
    min_side: int = 512
    words_min: int = 4  # words per image
    words_max: int = 24
    backgrounds: str = ""  # optional folder of real photos to crop backgrounds from
    # Folders of .ttf/.otf fonts, ":"-separated ("" = every font under /usr/share/fonts);
    # Pillow's built-in font is always added. `python -m textboost.assets` installs
    # assets/fonts/train and assets/fonts/heldout (validation text only).
    fonts: str = ""

    def __post_init__(self) -> None:
        _check_choice("data.synth.format", self.format, ("textocr", "icdar2015"))
        _check_range("data.synth.images", self.images, 1)
        _check_range("data.synth.seed", self.seed, 0)
        _check_range("data.synth.max_side", self.max_side, 64, MAX_IMAGE_SIDE)
        if not 64 <= self.min_side <= self.max_side:
            raise ConfigError(
                f"data.synth.min_side={self.min_side!r} is out of range: allowed "
                f"64..data.synth.max_side ({self.max_side})"
            )
        _check_range("data.synth.words_min", self.words_min, 0, MAX_SYNTH_WORDS)
        _check_range("data.synth.words_max", self.words_max, 0, MAX_SYNTH_WORDS)
        if self.words_max < self.words_min:
            raise ConfigError(
                f"data.synth.words_max={self.words_max!r} is out of range; allowed: "
                f"data.synth.words_min ({self.words_min})..{MAX_SYNTH_WORDS}"
            )


@dataclass
class SourceConfig:
    """One input dataset. URLs are fsspec URLs (local path, file://, memory://, s3://)."""

    # synthetic | textocr | icdar2015 | imagenet | folder | shards (eval.dataset only: the
    # built val shards, ``images`` = their folder, empty = shards.out)
    kind: str = "synthetic"
    images: str = ""  # image root folder (or tar file / folder of tars for imagenet)
    annotations: str = ""  # TextOCR JSON file or ICDAR 2015 gt folder
    ocr: str = "annotations"  # annotations | auto (run the OCR engine) | none
    limit: int = 0  # keep the first N samples of the sorted inputs (0 = all)

    def __post_init__(self) -> None:
        _check_choice("source.kind", self.kind, SOURCE_KINDS)
        _check_choice("source.ocr", self.ocr, ("annotations", "auto", "none"))
        _check_range("source.limit", self.limit, 0)


@dataclass
class FilterConfig:
    """Average-character-area filter (paper 4.1, 5.1.4)."""

    t_train: float = 150.0  # at training-crop resolution
    t_test: float = 800.0  # on full-resolution images

    def __post_init__(self) -> None:
        _check_range("data.filter.t_train", self.t_train, 0, exclusive_low=True)
        _check_range("data.filter.t_test", self.t_test, 0, exclusive_low=True)


@dataclass
class DataConfig:
    root: str = "${workdir}/data"  # where generated data lives
    synth: SynthConfig = field(default_factory=SynthConfig)
    train: SourceConfig = field(default_factory=SourceConfig)
    val: SourceConfig = field(default_factory=SourceConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)

    def __post_init__(self) -> None:
        for split in ("train", "val"):
            if getattr(self, split).kind == "shards":
                raise ConfigError(
                    f"data.{split}.kind=shards: shards are built from data.{split}; only "
                    "eval.dataset can read them"
                )


@dataclass
class ShardsConfig:
    """WebDataset shard build (one Ray task per shard)."""

    out: str = "${workdir}/shards"
    samples_per_shard: int = 32
    side_info_format: str = "compact"  # compact | gzip
    max_in_flight: int = 8  # Ray tasks in flight
    cpus_per_task: float = 1.0
    max_retries: int = 3
    jpeg_quality_for_png: int = 0  # 0 keeps original bytes untouched (always, by contract)
    executor: str = "ray"  # ray (one task per shard) | local (plain loop in this process)
    progress: bool = True  # tqdm progress bar
    # Which references share a shard. mixed: every class (synset / folder / tar) is spread
    # evenly over all shards, in a seeded-hash order (a 1,000-sample ImageNet shard holds
    # ~1,000 synsets); sorted: consecutive keys (one synset per ImageNet shard). Changes bytes.
    order: str = "mixed"

    def __post_init__(self) -> None:
        _check_choice("shards.side_info_format", self.side_info_format, ("compact", "gzip"))
        _check_choice("shards.order", self.order, ("mixed", "sorted"))
        _check_choice("shards.executor", self.executor, ("ray", "local"))
        if self.jpeg_quality_for_png != 0:
            raise ConfigError("shards.jpeg_quality_for_png must be 0: shards keep original bytes")
        _check_range("shards.max_in_flight", self.max_in_flight, 1)
        _check_range("shards.cpus_per_task", self.cpus_per_task, 0, exclusive_low=True)
        _check_range("shards.max_retries", self.max_retries, 0)
        _check_range("shards.samples_per_shard", self.samples_per_shard, 1)


@dataclass
class ModelConfig:
    """Backbone (compressai) + fusion block (paper 4.2)."""

    # elic (Elic2022Official, paper) | hyperprior (small, CPU) | tcm (LIC-TCM, textboost.tcm)
    backbone: str = "elic"
    N: int = 192  # tcm: width of each branch of a TCM block (its transforms carry 2N)
    M: int = 320
    tcm_slices: int = 5  # tcm: channel slices of y (M must be divisible by it; paper: 5)
    tcm_window: int = 8  # tcm: attention window of g_a / g_s (paper: 8)
    fusion_channels: int = 13  # decoder RGB expanded to this many channels (paper: 13)
    # Fusion residual gated by the guidance map dilated by fusion_gate_radius px: an all-zero
    # guidance map then gives exactly the backbone output (paper 4.1 "degrades gracefully").
    # false: ungated residual (the fusion block then also post-filters text-free images).
    fusion_gated: bool = True
    fusion_gate_radius: int = 4
    # paper: the block of Fig. 4 on the white-on-black guidance map. colour: the encoder also
    # sends each word's text and background colour (6 bytes a word, counted in bpp) and the
    # block sees a colour guidance map (textboost.colours, fusion.ColourFusionBlock).
    fusion: str = "paper"
    fusion_width: int = 32  # colour block: channels of its CNN
    # colour block: width of its global refinement path (fusion.Refiner; 0 = none). Trained in
    # stage 2 with the block; it post-filters the whole image, text-free ones too.
    fusion_refine: int = 0
    # textboost: the paper's model. roi: the text mask of the sent words is a 4th input
    # channel of the encoder (paper 5.2.5, ELIC-ROI). taco_style: a text adapter in the
    # encoder (cross-attention to the sent words' tokens, TACO). Both baselines send no side
    # info and have no fusion block: the decoder is the backbone's.
    kind: str = "textboost"
    # taco_style: per-word text encoder. small: char embedding + tiny transformer, trained
    # from scratch. clip: a frozen open_clip text tower (clip_arch) from local weights.
    text_encoder: str = "small"
    clip_weights: str = ""  # text_encoder=clip: path of the open_clip weights file
    clip_arch: str = "ViT-B-32"  # text_encoder=clip: open_clip model name
    text_dim: int = 64  # taco_style: width of the word tokens and the cross-attention

    def __post_init__(self) -> None:
        _check_choice("model.kind", self.kind, MODEL_KINDS)
        _check_choice("model.text_encoder", self.text_encoder, TEXT_ENCODERS)
        _check_range("model.text_dim", self.text_dim, 8, 1024)
        if self.text_dim % 4:
            raise ConfigError(
                f"model.text_dim={self.text_dim!r} is out of range; allowed: a multiple of 4 "
                "(4 attention heads) in 8..1024"
            )
        if self.kind != "taco_style" and (self.text_encoder != "small" or self.clip_weights):
            raise ConfigError(
                "model.text_encoder / model.clip_weights configure the text adapter of "
                "model.kind=taco_style; set model.kind=taco_style or drop them"
            )
        if self.text_encoder == "clip" and not self.clip_weights:
            raise ConfigError(
                "model.text_encoder=clip needs model.clip_weights (a local open_clip weights "
                "file: CLIP is not downloaded)"
            )
        if self.kind != "textboost" and self.backbone not in ("hyperprior", "elic"):
            raise ConfigError(
                f"model.kind={self.kind} supports backbone=hyperprior or backbone=elic (its "
                f"encoder input / adapter site), not backbone={self.backbone}"
            )
        if self.kind != "textboost" and (self.fusion != "paper" or self.fusion_refine):
            raise ConfigError(
                f"model.kind={self.kind} has no fusion block; leave model.fusion / "
                "model.fusion_refine at their defaults"
            )
        _check_choice("model.backbone", self.backbone, BACKBONES)
        for key in ("N", "M", "fusion_channels"):
            _check_range(f"model.{key}", getattr(self, key), 1, MAX_CHANNELS)
        if self.backbone == "elic" and self.M <= 128:
            raise ConfigError(
                "model.M must be > 128 for backbone=elic (channel groups 16,16,32,64,M-128); "
                "use e.g. model.M=192, or backbone=hyperprior for tiny models"
            )
        _check_range("model.tcm_slices", self.tcm_slices, 1, 32)
        _check_range("model.tcm_window", self.tcm_window, 1, 64)
        if self.backbone != "tcm":
            for key, default in TCM_DEFAULTS.items():
                if getattr(self, key) != default:
                    raise ConfigError(
                        f"model.{key} only applies to backbone=tcm (got backbone="
                        f"{self.backbone}); set model.backbone=tcm or drop model.{key}"
                    )
        elif self.M % self.tcm_slices:
            raise ConfigError(
                f"model.M={self.M} is not divisible by model.tcm_slices={self.tcm_slices}: "
                "backbone=tcm splits the latent into equal slices; use e.g. "
                f"model.M={self.M - self.M % self.tcm_slices + self.tcm_slices}"
            )
        _check_range("model.fusion_gate_radius", self.fusion_gate_radius, 0, 255)
        _check_choice("model.fusion", self.fusion, FUSIONS)
        _check_range("model.fusion_width", self.fusion_width, 1, MAX_CHANNELS)
        _check_range("model.fusion_refine", self.fusion_refine, 0, MAX_CHANNELS)
        if self.fusion_refine and self.fusion != "colour":
            raise ConfigError(
                "model.fusion_refine needs model.fusion=colour (the refinement path is part of "
                "the colour block); set model.fusion=colour or model.fusion_refine=0"
            )


@dataclass
class TrainConfig:
    """Ray Train DDP, stage 1 (rate-distortion) and stage 2 (fusion block, L_gc)."""

    stage: int = 1
    epochs: int = 1
    steps_per_epoch: int = 100  # batches per rank per epoch (resampled shards)
    batch_size: int = 32  # per worker
    crop_size: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lmbda: float = 0.0018
    alpha: float = 10.0
    clip_max_norm: float = 1.0
    lr_schedule: str = "cosine"  # cosine | constant
    warmup_steps: int = 0
    num_workers: int = 2  # Ray Train workers (DDP ranks)
    use_gpu: bool = False
    amp: str = "none"  # none | bf16
    loader_workers: int = 1  # DataLoader processes per rank
    # Samples each loader process holds (still encoded: ~0.1 MB each for ImageNet, ~0.3 MB for
    # TextOCR) and draws from at random; it refills from whole, class-mixed shards.
    shuffle_buffer: int = 1000
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    max_failures: int = 2
    storage_path: str = "${workdir}/ray_results"
    run_name: str = ""  # empty: a unique name per run; reuse a name to resume
    init_checkpoint: str = ""  # stage 2: stage-1 checkpoint path or MLflow model URI
    shards: str = "${shards.out}"  # shard folder (with manifest.json) to train on
    # Stage 2: share of crops centred on a sent word (0: uniform windows, as in stage 1)
    text_crop_prob: float = 0.0
    # Stage 2 L_gc target: original (paper Eq. 6) | guidance (colour guidance map; needs
    # model.fusion=colour)
    gc_target: str = "original"
    # Validation on the val shards (pipeline.validation): loss, bpp and PSNR on val_crops
    # fixed crops at each epoch end and every val_every steps (0: epoch ends only; val_crops=0:
    # off); stage 2 also DET/E2E F1 on val_images whole images every val_every steps.
    val_every: int = 0
    val_images: int = 8
    val_crops: int = 8
    # MLflow: each train.* metric averaged over windows of log_every steps, one row per window
    log_every: int = 50
    # Register the final checkpoint in mlflow.registered_model (pyfunc) with alias @trained
    register: bool = False
    # model.kind=roi, stage 1: distortion weight inside the text mask of the sent words,
    # MSE -> mean(w (x_hat - x)^2), w = 1 + (roi_weight - 1) mask (ignored for other kinds)
    roi_weight: float = 4.0

    def __post_init__(self) -> None:
        _check_choice("train.stage", self.stage, (1, 2))
        _check_range("train.roi_weight", self.roi_weight, 0, 1000, exclusive_low=True)
        _check_choice("train.gc_target", self.gc_target, ("original", "guidance"))
        _check_range("train.epochs", self.epochs, 1)
        _check_range("train.steps_per_epoch", self.steps_per_epoch, 1)
        _check_range("train.batch_size", self.batch_size, 1)
        _check_range("train.crop_size", self.crop_size, 64, 4096)
        if self.crop_size % 64:
            raise ConfigError(
                f"train.crop_size={self.crop_size!r} is out of range: allowed a multiple of 64 "
                "(the backbones downsample by 64) in 64..4096"
            )
        for key in ("lr", "aux_lr", "lmbda"):
            _check_range(f"train.{key}", getattr(self, key), 0, exclusive_low=True)
        _check_range("train.alpha", self.alpha, 0)
        _check_range("train.clip_max_norm", self.clip_max_norm, 0)  # 0: no clipping
        _check_range("train.warmup_steps", self.warmup_steps, 0)
        _check_range("train.num_workers", self.num_workers, 1)
        _check_range("train.loader_workers", self.loader_workers, 0)
        _check_range("train.shuffle_buffer", self.shuffle_buffer, 1, 1_000_000)
        _check_range("train.checkpoint_every", self.checkpoint_every, 1)
        _check_range("train.keep_checkpoints", self.keep_checkpoints, 1)
        _check_range("train.max_failures", self.max_failures, -1)  # -1: retry forever (Ray)
        _check_range("train.text_crop_prob", self.text_crop_prob, 0, 1)
        _check_range("train.val_every", self.val_every, 0)
        _check_range("train.val_images", self.val_images, 1)
        _check_range("train.val_crops", self.val_crops, 0, 4096)
        _check_range("train.log_every", self.log_every, 1)
        _check_choice("train.lr_schedule", self.lr_schedule, ("cosine", "constant"))
        _check_choice("train.amp", self.amp, ("none", "bf16"))


@dataclass
class EvalConfig:
    """Evaluation: real bitstreams, image metrics, text-spotting F1, baselines."""

    models: list[str] = field(default_factory=list)  # checkpoint paths or MLflow model URIs
    dataset: SourceConfig = field(default_factory=SourceConfig)
    limit: int = 0  # images (0 = all)
    baselines: list[str] = field(default_factory=lambda: ["jpeg", "webp", "backbone"])
    ocr: str = "annotations"  # where the side info comes from: annotations | auto
    out: str = "${workdir}/eval"
    crops: int = 4  # side-by-side crops to save
    lpips: bool = True  # reported only when LPIPS backbone weights are available locally
    register: bool = True  # log evaluated checkpoints as pyfunc models, register, set aliases
    track: bool = True  # log the evaluation as an MLflow run (mlflow section)
    # Side-info filter threshold at evaluation (average character area, px^2); 0 = the val
    # split's data.filter.t_test. A large value sends every legible word.
    t_test: float = 0.0
    # One threshold per eval.models entry (0 = t_test), so models measured at different
    # operating points share one table; empty: every model at t_test.
    model_t_test: list[float] = field(default_factory=list)
    # Ray tasks evaluating images at once (one image under every model per task); 0 = in
    # this process. Rows are written to ``<out>/rows.jsonl`` as images finish, so a stopped
    # evaluation resumes where it stopped; outputs are the same bytes for any value.
    workers: int = 0
    cpus_per_worker: float = 1.0  # Ray CPUs per evaluation task (OCR, metrics, baselines)
    use_gpu: bool = False  # the codec on a GPU (needs the same device for every run to compare)
    gpus_per_worker: float = 0.25  # with use_gpu and workers > 0: the GPU share of each task

    def __post_init__(self) -> None:
        _check_range("eval.workers", self.workers, 0)
        _check_range("eval.cpus_per_worker", self.cpus_per_worker, 0, exclusive_low=True)
        _check_range("eval.gpus_per_worker", self.gpus_per_worker, 0, exclusive_low=True)
        if self.gpus_per_worker > 1 and self.gpus_per_worker != int(self.gpus_per_worker):
            raise ConfigError(
                f"eval.gpus_per_worker={self.gpus_per_worker}: a share of one GPU (<= 1) or "
                "a whole number"
            )
        for b in self.baselines:
            _check_choice("eval.baselines[]", b, BASELINES)
        _check_choice("eval.ocr", self.ocr, ("annotations", "auto"))
        _check_range("eval.limit", self.limit, 0)
        _check_range("eval.crops", self.crops, 0)
        _check_range("eval.t_test", self.t_test, 0)  # 0: the val split's data.filter.t_test
        for t in self.model_t_test:
            _check_range("eval.model_t_test[]", t, 0)
        if self.model_t_test and len(self.model_t_test) != len(self.models):
            raise ConfigError(
                f"eval.model_t_test has {len(self.model_t_test)} values for "
                f"{len(self.models)} eval.models: give one per model (0 = eval.t_test) or none"
            )
        if self.register and not self.track:
            raise ConfigError("eval.register=true needs eval.track=true (models live in a run)")


@dataclass
class MlflowConfig:
    tracking_uri: str = "sqlite:///${workdir}/mlflow.db"
    experiment: str = "textboost"
    registered_model: str = "textboost"
    champion_metric: str = "e2e_f1"  # metric that must improve for the champion alias to move
    bpp_budget: float = 0.05  # compared at this bpp budget (mean bpp must not exceed it)

    def __post_init__(self) -> None:
        _check_range("mlflow.bpp_budget", self.bpp_budget, 0, exclusive_low=True)


@dataclass
class RayConfig:
    address: str = ""  # empty: RAY_ADDRESS if set, else an embedded local Ray
    num_cpus: int = 0  # embedded Ray only; 0 = all cores

    def __post_init__(self) -> None:
        _check_range("ray.num_cpus", self.num_cpus, 0)


PIPELINE_STAGES = ("data", "shards", "stage1", "stage2", "evaluate", "register")


@dataclass
class PipelineConfig:
    """End to end (``textboost pipeline``): stage list and per-stage ``key=value`` overrides.

    Stage 1 and stage 2 (paper 4.3, 5.1.4) share the ``train`` section; the overrides below
    say how each stage differs from it (checked strictly when the pipeline starts).
    """

    stages: list[str] = field(default_factory=lambda: list(PIPELINE_STAGES))
    stage1: list[str] = field(default_factory=list)  # e.g. ["train.epochs=2"]
    stage2: list[str] = field(default_factory=lambda: ["train.lr=1e-3"])
    evaluate: list[str] = field(default_factory=list)  # e.g. ["eval.limit=8"]

    def __post_init__(self) -> None:
        for stage in self.stages:
            _check_choice("pipeline.stages[]", stage, PIPELINE_STAGES)


@dataclass
class TextBoostConfig:
    workdir: str = "runs/default"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    def __post_init__(self) -> None:
        _check_range("seed", self.seed, 0)
        if self.model.kind != "textboost" and self.train.stage == 2:
            raise ConfigError(
                f"model.kind={self.model.kind} has no fusion block: it is trained in stage 1 "
                "only (train.stage=1; leave stage2 out of pipeline.stages)"
            )


def _check_choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of {list(allowed)}")


def _check_range(
    key: str, value: Any, low: float | None = None, high: float | None = None,
    exclusive_low: bool = False,
) -> None:  # fmt: skip
    """``ConfigError`` unless ``value`` is a finite number in the range (named in the message)."""
    if exclusive_low:
        allowed = f"a finite number > {low:g}"
    elif high is None:
        allowed = f">= {low:g}"
    else:
        allowed = f"{low:g}..{high:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}={value!r} is not a number; allowed: {allowed}")
    if not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} is not a finite number; allowed: {allowed}")
    too_low = low is not None and (value <= low if exclusive_low else value < low)
    if too_low or (high is not None and value > high):
        raise ConfigError(f"{key}={value!r} is out of range; allowed: {allowed}")


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


def to_dict(cfg: Any) -> dict:
    """Plain dict of a (section of a) config."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


# Keys that were removed from the schema, with where the setting lives now. Stored configs
# (checkpoints, the shipped zoo weights, shard manifests) written before the removal still
# carry them: ``section_from_dict`` drops exactly these keys, so old artefacts load; a YAML
# file or an override that sets one is refused, naming the replacement.
REMOVED_KEYS = {
    "shards.fail_once_marker": "test-only: env TEXTBOOST_FAULT_SHARD_ONCE (pipeline.faults)",
    "train.fail_at_step": "test-only: env TEXTBOOST_FAULT_TRAIN_STEP (pipeline.faults)",
}


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
