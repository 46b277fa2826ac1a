"""A real project state for registry tests: the bundled data preprocessed, checkpoints trained
(or freshly initialised) by the real stages, the evaluate stage's report, a SQLite registry."""

from __future__ import annotations

from pathlib import Path

import torch

from mtrec.config import Params, deep_merge, load_params
from mtrec.data.canonical import CanonicalTables
from mtrec.io import write_json
from mtrec.stages import evaluate, preprocess, transfer, validate
from mtrec.stages.modeling import (
    build_model,
    load_checkpoint,
    load_processed,
    transferred_path,
)

from .conftest import PROJECT_ROOT

PATHS = ("interim", "processed", "reports", "accepted", "transferred", "pretrained", "baselines")


def registry_params(
    root: Path, registry: Path, overrides: dict | None = None, **paths: str
) -> Params:
    """params.yaml with its outputs under ``root`` (``paths``: shared ones) and the SQLite
    registry under ``registry``; scratch and finetune, one seed."""
    own = {n: str(root / n) for n in PATHS} | paths
    base = {
        "paths": own,
        "eval": {"seeds": [0]},
        "transfer": {"strategies": ["scratch", "finetune"], "train": {"epochs": 1}},
        "registry": {
            "tracking_uri": f"sqlite:///{registry / 'mlflow.db'}",
            "artifact_root": str(registry / "mlartifacts"),
        },
    }
    return load_params(PROJECT_ROOT / "params.yaml", deep_merge(base, overrides or {}))


def preprocessed(params: Params, canonical: CanonicalTables) -> Params:
    """The preprocess stage's output for ``params`` (the data gate's report: passed)."""
    canonical.save(params.paths.interim)
    write_json(params.paths.report(validate.REPORT), {"success": True})
    preprocess.run(params)
    return params


def write_checkpoints(params: Params, trained: str | None = None, init_seed: int = 0) -> None:
    """Every strategy's checkpoint: ``trained`` (scratch only) by the transfer stage's own
    training, the others freshly initialised from ``init_seed`` (an untrained model)."""
    data = load_processed(params)
    for strategy in params.transfer.strategies:
        for seed in params.eval.seeds:
            path = transferred_path(params, strategy, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            if strategy == trained:
                rows = transfer.target_rows(params, data)
                model, _ = transfer.train_strategy(
                    params, data, strategy, seed, rows, torch.device("cpu")
                )
            else:
                model = build_model(params, data, init_seed + seed)
            model.save(path)


def evaluated(params: Params) -> dict:
    """The evaluate stage's report (without the BPR baseline) for the checkpoints in place."""
    models = {
        name: [load_checkpoint(transferred_path(params, name, s)) for s in params.eval.seeds]
        for name in params.transfer.strategies
    }
    report = evaluate.evaluation_report(params, load_processed(params), models)
    write_json(params.paths.report(evaluate.METRICS_FILE), report)
    return report
