"""The config sections (``@dataclass``es) besides ``model``, and the whole ``TextBoostConfig``."""

from __future__ import annotations

from dataclasses import dataclass, field

from textboost.config.checks import check_choice, check_range
from textboost.config.model import ModelConfig
from textboost.errors import ConfigError

SOURCE_KINDS = ("synthetic", "textocr", "icdar2015", "imagenet", "folder", "shards")
# overlay: the no-learning use of a colour container's side info (colour models only)
BASELINES = ("jpeg", "webp", "backbone", "overlay", "avif", "avif_min", "avif_half")
MAX_IMAGE_SIDE = 1 << 15  # as textboost.codec.container.MAX_SIDE
MAX_SYNTH_WORDS = 4096


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
    # Pillow's built-in font is always added. `python -m textboost.data.assets` installs
    # assets/fonts/train and assets/fonts/heldout (validation text only).
    fonts: str = ""

    def __post_init__(self) -> None:
        check_choice("data.synth.format", self.format, ("textocr", "icdar2015"))
        check_range("data.synth.images", self.images, 1)
        check_range("data.synth.seed", self.seed, 0)
        check_range("data.synth.max_side", self.max_side, 64, MAX_IMAGE_SIDE)
        if not 64 <= self.min_side <= self.max_side:
            raise ConfigError(
                f"data.synth.min_side={self.min_side!r} is out of range: allowed "
                f"64..data.synth.max_side ({self.max_side})"
            )
        check_range("data.synth.words_min", self.words_min, 0, MAX_SYNTH_WORDS)
        check_range("data.synth.words_max", self.words_max, 0, MAX_SYNTH_WORDS)
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
        check_choice("source.kind", self.kind, SOURCE_KINDS)
        check_choice("source.ocr", self.ocr, ("annotations", "auto", "none"))
        check_range("source.limit", self.limit, 0)


@dataclass
class FilterConfig:
    """Average-character-area filter (paper 4.1, 5.1.4)."""

    t_train: float = 150.0  # at training-crop resolution
    t_test: float = 800.0  # on full-resolution images

    def __post_init__(self) -> None:
        check_range("data.filter.t_train", self.t_train, 0, exclusive_low=True)
        check_range("data.filter.t_test", self.t_test, 0, exclusive_low=True)


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
        check_choice("shards.side_info_format", self.side_info_format, ("compact", "gzip"))
        check_choice("shards.order", self.order, ("mixed", "sorted"))
        check_choice("shards.executor", self.executor, ("ray", "local"))
        if self.jpeg_quality_for_png != 0:
            raise ConfigError("shards.jpeg_quality_for_png must be 0: shards keep original bytes")
        check_range("shards.max_in_flight", self.max_in_flight, 1)
        check_range("shards.cpus_per_task", self.cpus_per_task, 0, exclusive_low=True)
        check_range("shards.max_retries", self.max_retries, 0)
        check_range("shards.samples_per_shard", self.samples_per_shard, 1)


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
        check_choice("train.stage", self.stage, (1, 2))
        check_range("train.roi_weight", self.roi_weight, 0, 1000, exclusive_low=True)
        check_choice("train.gc_target", self.gc_target, ("original", "guidance"))
        check_range("train.epochs", self.epochs, 1)
        check_range("train.steps_per_epoch", self.steps_per_epoch, 1)
        check_range("train.batch_size", self.batch_size, 1)
        check_range("train.crop_size", self.crop_size, 64, 4096)
        if self.crop_size % 64:
            raise ConfigError(
                f"train.crop_size={self.crop_size!r} is out of range: allowed a multiple of 64 "
                "(the backbones downsample by 64) in 64..4096"
            )
        for key in ("lr", "aux_lr", "lmbda"):
            check_range(f"train.{key}", getattr(self, key), 0, exclusive_low=True)
        check_range("train.alpha", self.alpha, 0)
        check_range("train.clip_max_norm", self.clip_max_norm, 0)  # 0: no clipping
        check_range("train.warmup_steps", self.warmup_steps, 0)
        check_range("train.num_workers", self.num_workers, 1)
        check_range("train.loader_workers", self.loader_workers, 0)
        check_range("train.shuffle_buffer", self.shuffle_buffer, 1, 1_000_000)
        check_range("train.checkpoint_every", self.checkpoint_every, 1)
        check_range("train.keep_checkpoints", self.keep_checkpoints, 1)
        check_range("train.max_failures", self.max_failures, -1)  # -1: retry forever (Ray)
        check_range("train.text_crop_prob", self.text_crop_prob, 0, 1)
        check_range("train.val_every", self.val_every, 0)
        check_range("train.val_images", self.val_images, 1)
        check_range("train.val_crops", self.val_crops, 0, 4096)
        check_range("train.log_every", self.log_every, 1)
        check_choice("train.lr_schedule", self.lr_schedule, ("cosine", "constant"))
        check_choice("train.amp", self.amp, ("none", "bf16"))


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
    # Which candidate words a TextBoost colour model sends: threshold (the paper: every word
    # under T) | legible (the encoder's OCR checks the decoder's output: words it already
    # reads are not sent, the others at the lowest strength still read; textboost.codec.
    # legibility). Baseline models always take the thresholded words.
    select: str = "threshold"
    select_margin: int = 0  # legible: send each word this many strengths above the lowest read
    # Ray tasks evaluating images at once (one image under every model per task); 0 = in
    # this process. Rows are written to ``<out>/rows.jsonl`` as images finish, so a stopped
    # evaluation resumes where it stopped; outputs are the same bytes for any value.
    workers: int = 0
    cpus_per_worker: float = 1.0  # Ray CPUs per evaluation task (OCR, metrics, baselines)
    use_gpu: bool = False  # the codec on a GPU (needs the same device for every run to compare)
    gpus_per_worker: float = 0.25  # with use_gpu and workers > 0: the GPU share of each task

    def __post_init__(self) -> None:
        check_range("eval.workers", self.workers, 0)
        check_range("eval.cpus_per_worker", self.cpus_per_worker, 0, exclusive_low=True)
        check_range("eval.gpus_per_worker", self.gpus_per_worker, 0, exclusive_low=True)
        if self.gpus_per_worker > 1 and self.gpus_per_worker != int(self.gpus_per_worker):
            raise ConfigError(
                f"eval.gpus_per_worker={self.gpus_per_worker}: a share of one GPU (<= 1) or "
                "a whole number"
            )
        for b in self.baselines:
            check_choice("eval.baselines[]", b, BASELINES)
        check_choice("eval.ocr", self.ocr, ("annotations", "auto"))
        check_choice("eval.select", self.select, ("threshold", "legible"))
        check_range("eval.select_margin", self.select_margin, 0, 3)
        check_range("eval.limit", self.limit, 0)
        check_range("eval.crops", self.crops, 0)
        check_range("eval.t_test", self.t_test, 0)  # 0: the val split's data.filter.t_test
        for t in self.model_t_test:
            check_range("eval.model_t_test[]", t, 0)
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
        check_range("mlflow.bpp_budget", self.bpp_budget, 0, exclusive_low=True)


@dataclass
class RayConfig:
    address: str = ""  # empty: RAY_ADDRESS if set, else an embedded local Ray
    num_cpus: int = 0  # embedded Ray only; 0 = all cores

    def __post_init__(self) -> None:
        check_range("ray.num_cpus", self.num_cpus, 0)


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
            check_choice("pipeline.stages[]", stage, PIPELINE_STAGES)


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
        check_range("seed", self.seed, 0)
        if self.model.kind != "textboost" and self.train.stage == 2:
            raise ConfigError(
                f"model.kind={self.model.kind} has no fusion block: it is trained in stage 1 "
                "only (train.stage=1; leave stage2 out of pipeline.stages)"
            )
