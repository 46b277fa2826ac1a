"""Command ``tune``: hyperparameter search for one strategy, each trial logged to MLflow.

Not a pipeline stage (``dvc repro`` does not run it): run ``python -m mtrec tune`` after the
pipeline, then apply the best values with the ``dvc exp run -S ...`` command it prints (also in
``reports/tune/best.json``). Trials train on target train rows and are scored by NDCG@K on the
target *valid* rows (train items masked), so the test split never steers the search.
"""

from __future__ import annotations

import logging
from typing import Any

from mtrec.config import Params, SearchRange, deep_merge, parse_params
from mtrec.core.evaluation import evaluate_model
from mtrec.core.trainer import pick_device
from mtrec.data.splitting import TARGET, TRAIN, VALID
from mtrec.data.tensors import domain_items, ranking_task, task_columns
from mtrec.errors import ConfigError
from mtrec.io import write_atomic, write_json
from mtrec.registry import Registry
from mtrec.stages.modeling import ProcessedData, load_processed
from mtrec.stages.transfer import target_rows, train_strategy

log = logging.getLogger(__name__)

REPORTS = "tune"
SOURCE_FREE = ("scratch", "sample_weighted", "joint")  # strategies that may tune model.*


def _nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"transfer.train.lr": 0.01} -> {"transfer": {"train": {"lr": 0.01}}}."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *path, leaf = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def trial_params(params: Params, values: dict[str, Any]) -> Params:
    """``params`` with one trial's values (dotted keys) applied and validated."""
    return parse_params(deep_merge(params.to_dict(), _nested(values)), source="tune trial")


def check_space(params: Params) -> None:
    """Refuse a search the pretrained models cannot serve, or keys params do not have."""
    cfg = params.tune
    if cfg.strategy not in params.transfer.strategies:
        raise ConfigError(f"tune.strategy {cfg.strategy!r} is not in transfer.strategies")
    model_keys = [k for k in cfg.space if k.startswith("model.")]
    if model_keys and cfg.strategy not in SOURCE_FREE:
        raise ConfigError(
            f"tune.space {model_keys} changes the model, which the pretrained source models "
            f"cannot follow; tune them with a strategy in {SOURCE_FREE}"
        )
    for key, bounds in cfg.space.items():
        values = bounds.choices or [round(bounds.low) if bounds.integer else bounds.low]
        for value in values:  # unknown keys and values params refuse fail here
            trial_params(params, {key: value})


def suggest(trial: Any, space: dict[str, SearchRange]) -> dict[str, Any]:
    """One point of the search space from an Optuna trial."""
    return {key: _suggest_one(trial, key, b) for key, b in space.items()}


def _suggest_one(trial: Any, key: str, b: SearchRange) -> Any:
    if b.choices is not None:
        return trial.suggest_categorical(key, b.choices)
    if b.integer:
        return trial.suggest_int(key, int(b.low), int(b.high), log=b.log)
    return trial.suggest_float(key, b.low, b.high, log=b.log)


def validation_ndcg(params: Params, data: ProcessedData) -> float:
    """Validation NDCG@K of ``params.tune.strategy`` trained with ``params`` (first seed)."""
    model, _ = train_strategy(
        params,
        data,
        params.tune.strategy,
        params.eval.seeds[0],
        target_rows(params, data),
        pick_device(params.transfer.train.device),
    )
    task = ranking_task(
        data.positives(TARGET, TRAIN),
        data.positives(TARGET, VALID),
        domain_items(data.items, TARGET),
    )
    k = params.eval.k
    rows = task_columns(data.rows(TARGET, VALID))
    return evaluate_model(model, rows, task, k, params.eval.user_block)[f"ndcg@{k}"]


def run(params: Params) -> None:
    """Search ``tune.space`` with ``tune.trials`` trials; write the trials and the best point."""
    import mlflow
    import optuna

    check_space(params)
    cfg = params.tune
    data = load_processed(params)
    Registry(params.registry)  # tracking URI and experiment
    sampler = (
        optuna.samplers.TPESampler(seed=cfg.seed)
        if cfg.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=cfg.seed)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    metric = f"valid_ndcg_at_{params.eval.k}"

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, cfg.space)
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params(values)
            score = validation_ndcg(trial_params(params, values), data)
            mlflow.log_metric(metric, score)
        log.info("trial %d %s: %s %.4f", trial.number, values, metric, score)
        return score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with mlflow.start_run(run_name=f"tune-{cfg.strategy}"):
        mlflow.log_params({"tune.strategy": cfg.strategy, "tune.sampler": cfg.sampler})
        study.optimize(objective, n_trials=cfg.trials)
        mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
        mlflow.log_metric(f"best_{metric}", study.best_value)
    command = "dvc exp run " + " ".join(f"-S {k}={v}" for k, v in study.best_params.items())
    out = params.paths.report(REPORTS)
    write_json(
        out / "best.json",
        {
            "strategy": cfg.strategy,
            metric: study.best_value,
            "params": study.best_params,
            "apply": command,
        },
    )
    trials = study.trials_dataframe(attrs=("number", "value", "params"))
    write_atomic(out / "trials.csv", lambda p: trials.to_csv(p, index=False))
    log.info(
        "best %s %.4f with %s; apply with: %s", metric, study.best_value, study.best_params, command
    )
