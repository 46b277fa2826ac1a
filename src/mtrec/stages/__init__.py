"""Pipeline stages, in run order. Each is ``run(params)``; ``python -m mtrec <stage>`` calls it.

``transfer`` and ``curve`` also take one item (a strategy, a train fraction): ``dvc.yaml`` runs
them once per item with ``foreach``; without an item they run every item in turn.

:data:`STAGE_INFO` is the one description of every stage: the CLI's help and the Airflow task
docs both read it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StageInfo:
    """What a stage does, for people: one line, what it reads and writes, its params sections."""

    summary: str
    reads: str
    writes: str
    params: tuple[str, ...]
    item: str = ""  # what the optional positional item is, for stages that take one


STAGE_INFO: dict[str, StageInfo] = {
    "ingest": StageInfo(
        "dataset adapter (data.dataset) -> canonical tables",
        "data.raw_dir (the bundled ml-latest-small by default)",
        "paths.interim (data/interim/)",
        ("data",),
    ),
    "validate": StageInfo(
        "Great Expectations suites on the canonical tables: the data gate",
        "paths.interim, gx/ suites, paths.accepted (last accepted profile)",
        "reports/validation.json (and Data Docs in reports/data_docs/, not tracked by DVC)",
        ("validate", "registry"),
    ),
    "preprocess": StageInfo(
        "clean, encode ids, split source/target domains, train/valid/test, negatives",
        "paths.interim, reports/validation.json",
        "paths.processed (data/processed/)",
        ("target", "preprocess", "protocol"),
    ),
    "embed_items": StageInfo(
        "item text -> sentence embeddings (only with model.item_encoder: lm)",
        "paths.interim/items.parquet",
        "paths.embeddings (data/embeddings/)",
        ("embed", "model"),
    ),
    "pretrain": StageInfo(
        "multi-task model on the source domain, one per seed (none when single-domain)",
        "paths.processed, paths.embeddings",
        "paths.pretrained (models/pretrain/), reports/pretrain.json",
        ("model", "pretrain", "protocol", "eval"),
    ),
    "transfer": StageInfo(
        "the target domain, one model per strategy and seed",
        "paths.processed, paths.pretrained, paths.embeddings",
        "paths.transferred/<strategy>/, reports/transfer/<strategy>.json",
        ("model", "transfer", "eval"),
        item="a strategy (default: every one in transfer.strategies)",
    ),
    "baselines": StageInfo(
        "baselines.models, one per seed: BPR-MF and LightGCN on the target's rows alone, "
        "lightgcn_joint on both domains' (a graph per domain)",
        "paths.processed",
        "paths.baselines (models/baselines/), reports/baselines.json",
        ("baselines", "eval"),
    ),
    "evaluate": StageInfo(
        "AUCs, RMSE, full-ranking NDCG/HR/Recall@K, cold users, popularity, transfer gains",
        "paths.processed, trained models",
        "reports/metrics.json, reports/results.md",
        ("eval", "transfer", "target", "protocol", "preprocess"),
    ),
    "curve": StageInfo(
        "curve.strategies trained and scored at another target train fraction",
        "paths.interim, paths.pretrained",
        "reports/curve/<fraction>.json",
        ("target", "preprocess", "protocol", "model", "transfer", "eval", "curve"),
        item="a train fraction (default: every one in curve.fractions)",
    ),
    "report": StageInfo(
        "the transfer report, curve PNG and DVC plots data",
        "reports/metrics.json, reports/curve/",
        "reports/transfer.md, reports/transfer_curve.png, reports/plots/",
        ("curve", "transfer", "target", "eval", "protocol"),
    ),
    "register": StageInfo(
        "MLflow run and model version (@challenger); the gates decide @champion",
        "models, reports",
        "MLflow registry (registry.tracking_uri), reports/registration.json",
        ("registry", "gates", "eval", "data", "target"),
    ),
    "recommend": StageInfo(
        "top-K target items for every user from the registry's serving.alias",
        "the registry, paths.processed",
        "serving.output (data/recommendations.parquet), reports/recommend.json",
        ("serving", "registry", "data", "target"),
    ),
    "tune": StageInfo(
        "Optuna search over tune.space, each trial scored on target valid NDCG",
        "paths.processed, paths.pretrained",
        "reports/tune/best.json (with the dvc exp run command that applies it)",
        ("tune", "transfer"),
    ),
}

STAGES = (
    "ingest",
    "validate",
    "preprocess",
    "embed_items",
    "pretrain",
    "transfer",
    "baselines",
    "evaluate",
    "curve",
    "report",
    "register",
)

# Run after the pipeline, from the registry (`dvc repro` runs it last; the training DAG runs it
# after register, skipped while the served alias does not exist yet).
SERVING_STAGES = ("recommend",)

# Run by hand, never by dvc repro or the DAG: hyperparameter search.
COMMANDS = ("tune",)

ITEM_STAGES = tuple(name for name, info in STAGE_INFO.items() if info.item)
ALL_STAGES = STAGES + SERVING_STAGES + COMMANDS


def stage_runner(name: str) -> Callable[..., None]:
    """The ``run`` function of a stage (imported lazily: stages pull in heavy libraries)."""
    if name not in ALL_STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(ALL_STAGES)}")
    return importlib.import_module(f"mtrec.stages.{name}").run
