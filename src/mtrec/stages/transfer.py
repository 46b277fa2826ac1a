"""Stage ``transfer``: target-domain models, one per strategy and seed.

With ``preprocess.cv_folds`` >= 2 it first cross-validates each strategy (first seed) over the
target's train+valid rows and records the one with the best held-out NDCG as ``selected``,
which ``registry.strategy: cv_best`` registers. Test rows are never used for the choice.
"""

from __future__ import annotations

import logging
import statistics

import torch

from mtrec.config import Params
from mtrec.core.evaluation import evaluate_model
from mtrec.core.multitask import MultiTaskModel
from mtrec.core.trainer import FitResult, fit, pick_device
from mtrec.core.transfer import get_strategy
from mtrec.data.splitting import TARGET, TRAIN, VALID
from mtrec.data.tensors import domain_items, ranking_task, task_columns
from mtrec.io import atomic_path, write_json
from mtrec.stages.modeling import (
    ProcessedData,
    build_model,
    load_checkpoint,
    load_processed,
    pretrained_path,
)

log = logging.getLogger(__name__)

REPORT = "transfer.json"


def train_strategy(
    params: Params,
    data: ProcessedData,
    name: str,
    seed: int,
    train: dict[str, torch.Tensor],
    valid: dict[str, torch.Tensor],
    device: torch.device,
) -> tuple[MultiTaskModel, FitResult | None]:
    """Build the strategy's starting point for ``seed`` and train it on the target rows."""
    strategy = get_strategy(name, params.transfer.l2sp_strength)
    source = load_checkpoint(pretrained_path(params, seed)) if strategy.needs_source else None
    model = strategy.prepare(build_model(params, data, seed), source)
    if not strategy.trains:
        return model, None
    return model, fit(model, train, valid, params.transfer.train, seed, device, strategy.penalty)


def cross_validate(
    params: Params, data: ProcessedData, name: str, device: torch.device
) -> dict[str, float | list[float]]:
    """k-fold over the target's train+valid rows: train on k-1 folds (early-stopping on the
    held-out one), then rank all target items for the held-out fold's positives."""
    rows = data.rows(TARGET, TRAIN, VALID)
    candidates = domain_items(data.items, TARGET)
    metric = f"ndcg@{params.eval.k}"
    scores = []
    for fold in range(data.meta["cv_folds"]):
        fit_rows, held = rows[rows["fold"] != fold], rows[rows["fold"] == fold]
        model, _ = train_strategy(
            params,
            data,
            name,
            params.eval.seeds[0],
            task_columns(fit_rows),
            task_columns(held),
            device,
        )
        task = ranking_task(fit_rows[fit_rows["click"] == 1], held[held["click"] == 1], candidates)
        scores.append(
            evaluate_model(model, task_columns(held), task, params.eval.k, params.eval.user_block)[
                metric
            ]
        )
    return {"mean": statistics.fmean(scores), "std": statistics.stdev(scores), "per_fold": scores}


def run(params: Params) -> None:
    """(Optionally cross-validate, then) train every strategy for every seed."""
    data = load_processed(params)
    train, valid = (task_columns(data.rows(TARGET, s)) for s in (TRAIN, VALID))
    device = pick_device(params.transfer.train.device)
    report: dict[str, dict] = {}
    if data.meta["cv_folds"] >= 2:
        cv = {
            name: cross_validate(params, data, name, device) for name in params.transfer.strategies
        }
        report["cv"] = {
            "folds": data.meta["cv_folds"],
            "metric": f"ndcg@{params.eval.k}",
            "scores": cv,
            "selected": max(cv, key=lambda n: cv[n]["mean"]),
        }
        log.info("cross-validation: %s", report["cv"])
    with atomic_path(params.paths.transferred) as out_dir:
        for name in params.transfer.strategies:
            (out_dir / name).mkdir(parents=True)
            for seed in params.eval.seeds:
                model, result = train_strategy(params, data, name, seed, train, valid, device)
                model.cpu().save(out_dir / name / f"seed{seed}.pt")
                report.setdefault("strategies", {}).setdefault(name, {})[f"seed{seed}"] = (
                    {"trained": False}
                    if result is None
                    else {
                        "best_epoch": result.best_epoch,
                        "seconds": result.seconds,
                        "valid_loss": result.best_valid_loss,
                    }
                )
                log.info("%s seed %d: %s", name, seed, report["strategies"][name][f"seed{seed}"])
    write_json(params.paths.report(REPORT), report)
