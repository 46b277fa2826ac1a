"""Stage ``transfer <strategy>``: target-domain models of one strategy, one per seed.

``dvc.yaml`` runs it once per entry of ``transfer.strategies`` (``foreach``), the DAG once per
mapped task. With ``preprocess.cv_folds`` >= 2 it first cross-validates the strategy (first
seed) over the target's train+valid rows; ``evaluate`` then selects the strategy with the best
held-out NDCG (what ``registry.strategy: cv_best`` registers). Test rows are never used.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from mtrec.config import Params
from mtrec.core import distributed
from mtrec.core.batches import MixedBatches
from mtrec.core.evaluation import evaluate_model
from mtrec.core.multitask import MultiTaskModel
from mtrec.core.trainer import FitResult, Monitor, fit, pick_device
from mtrec.core.transfer import get_strategy
from mtrec.data.splitting import SOURCE, TARGET, TRAIN, VALID
from mtrec.data.tensors import domain_items, positive_edges, ranking_task, task_columns
from mtrec.errors import ConfigError
from mtrec.io import write_json
from mtrec.stages.modeling import (
    TIMING,
    ProcessedData,
    build_model,
    load_checkpoint,
    load_processed,
    negatives_refresh,
    output_path,
    pretrained_path,
    ranking_loss,
    valid_monitor,
)
from mtrec.stages.parallel import map_runs, worker_count

log = logging.getLogger(__name__)

REPORTS = "transfer"  # one <strategy>.json per strategy under paths.reports


def report_path(params: Params, strategy: str) -> Path:
    """The transfer report of one strategy."""
    return params.paths.report(REPORTS) / f"{strategy}.json"


@dataclass
class Rows:
    """Column tensors a strategy trains on: target train/valid, and source train rows for the
    strategies that mix them in. A graph model (``graph_layers`` > 0) propagates over the
    clicked rows among them, so what it may see is what it trains on."""

    train: dict[str, torch.Tensor]
    valid: dict[str, torch.Tensor]
    source: dict[str, torch.Tensor]
    # Early-stopping score on the valid rows (``train.early_stopping: ndcg``); None = loss.
    monitor: Monitor | None = None


def target_rows(params: Params, data: ProcessedData) -> Rows:
    """The default split's training rows."""
    return Rows(
        *(task_columns(data.rows(TARGET, s)) for s in (TRAIN, VALID)),
        source=task_columns(data.rows(SOURCE, TRAIN)),
        monitor=valid_monitor(params, params.transfer.train, data, TARGET),
    )


def train_strategy(
    params: Params, data: ProcessedData, name: str, seed: int, rows: Rows, device: torch.device
) -> tuple[MultiTaskModel, dict]:
    """Build the strategy's starting point for ``seed``, train it on the target rows (plus
    drawn source rows for instance transfer); returns the model and what happened."""
    cfg = params.transfer
    strategy = get_strategy(name, cfg.l2sp_strength, cfg.importance_clip)
    source = load_checkpoint(pretrained_path(params, seed)) if strategy.needs_source else None
    # Scratch uses no source data: its graph (graph_layers > 0) holds the target's edges only,
    # or the source's interactions would reach it through shared users' propagated vectors.
    graph = positive_edges(rows.train)
    if strategy.needs_source or strategy.mixes_source_rows:
        graph = torch.cat([positive_edges(rows.source), graph], dim=1)
    model = strategy.prepare(build_model(params, data, seed, graph), source)
    if not strategy.trains:
        return model, {"trained": False}
    train: dict[str, torch.Tensor] | MixedBatches = rows.train
    info: dict = {}
    if strategy.mixes_source_rows:
        weights = strategy.source_weights(model, rows.train, rows.source, seed)
        info["source_weights"] = _weight_summary(weights)
        train = MixedBatches(
            rows.train, rows.source, weights, cfg.source_ratio, cfg.train.batch_size
        )
    refresh = negatives_refresh(cfg.train, data)
    result: FitResult = fit(
        model,
        train,
        rows.valid,
        cfg.train,
        seed,
        device,
        strategy.penalty,
        refresh,
        rows.monitor,
        ranking_loss(cfg.train, data),
    )
    log.info("%s seed %d trained in %.1f s", name, seed, result.seconds)
    # Training epochs only (validation excluded), as RecBole and the baselines count.
    trained = result.history[-1]["train_seconds"] if result.history else 0.0
    timing: dict = {"train_seconds": round(trained, 3)}
    if rows.monitor:  # the (training seconds, valid score) curve the bench reads
        timing["curve"] = [[round(h["train_seconds"], 3), h["valid_score"]] for h in result.history]
    return model, info | timing | {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "valid_loss": result.best_valid_loss,
    }


def _weight_summary(weights: torch.Tensor) -> dict[str, float]:
    """Range of the importance weights and their effective sample size share (Kish)."""
    return {
        "min": weights.min().item(),
        "max": weights.max().item(),
        "mean": weights.mean().item(),
        "ess_share": (weights.sum() ** 2 / (weights**2).sum() / len(weights)).item(),
    }


def fold_rows(
    data: ProcessedData, rows: Rows, fold: int
) -> tuple[Rows, pd.DataFrame, pd.DataFrame]:
    """Cross-validation fold ``fold``: the rows to train on (the other folds, with the source
    rows of ``rows``), and the target rows of the other folds and of this one (held out;
    a graph model trained on the returned rows never sees them, not even through
    propagation)."""
    frame = data.rows(TARGET, TRAIN, VALID)
    fit, held = frame[frame["fold"] != fold], frame[frame["fold"] == fold]
    return Rows(task_columns(fit), task_columns(held), rows.source), fit, held


def cross_validate(
    params: Params, data: ProcessedData, name: str, rows: Rows, device: torch.device
) -> dict[str, float | list[float]]:
    """k-fold over the target's train+valid rows: train on k-1 folds (early-stopping on the
    held-out one), then rank all target items for the held-out fold's positives."""
    candidates = domain_items(data.items, TARGET)
    scores = []
    for fold in range(data.meta["cv_folds"]):
        fold_train, fit, held = fold_rows(data, rows, fold)
        model, _ = train_strategy(params, data, name, params.eval.seeds[0], fold_train, device)
        task = ranking_task(fit[fit["click"] == 1], held[held["click"] == 1], candidates)
        k, block = params.eval.k, params.eval.user_block
        scores.append(evaluate_model(model, task_columns(held), task, k, block)[f"ndcg@{k}"])
    return {"mean": statistics.fmean(scores), "std": statistics.stdev(scores), "per_fold": scores}


def run(params: Params, strategy: str | None = None) -> None:
    """Train ``strategy`` (default: every one in ``transfer.strategies``) for every seed."""
    names = params.transfer.strategies
    if strategy is not None and strategy not in names:
        raise ConfigError(f"{strategy!r} is not in transfer.strategies {names}")
    data = load_processed(params)
    rows = target_rows(params, data)
    device = pick_device(params.transfer.train.device)
    for name in names if strategy is None else [strategy]:
        _run_strategy(params, data, name, rows, device)


def _run_strategy(
    params: Params, data: ProcessedData, strategy: str, rows: Rows, device: torch.device
) -> None:
    """(Optionally cross-validate, then) train one strategy for every seed; write its report."""
    report: dict = {"strategy": strategy}
    if data.meta["cv_folds"] >= 2:
        report["cv"] = cross_validate(params, data, strategy, rows, device)
        log.info("%s cross-validation: %s", strategy, report["cv"])
    with output_path(Path(params.paths.transferred) / strategy) as out_dir:
        out_dir.mkdir(parents=True)

        def train_seed(seed: int) -> dict:
            model, info = train_strategy(params, data, strategy, seed, rows, device)
            model.cpu().save(out_dir / f"seed{seed}.pt")
            info = {k: v for k, v in info.items() if k not in TIMING}
            log.info("%s seed %d: %s", strategy, seed, info)
            return info

        seeds = params.eval.seeds
        infos = map_runs(train_seed, seeds, worker_count(params.parallel, device, len(seeds)))
        report["seeds"] = {f"seed{seed}": info for seed, info in zip(seeds, infos, strict=True)}
    if distributed.current().main:
        write_json(report_path(params, strategy), report)
