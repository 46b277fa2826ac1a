"""Stage ``evaluate``: every strategy and seed on the target test split, mean ± std, with cold
users (no target training history) reported separately and, optionally, the sampled protocol."""

from __future__ import annotations

import hashlib
import logging
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from mtrec.config import Params
from mtrec.core.bpr import BPRMF
from mtrec.core.evaluation import (
    RankingTask,
    SampledTask,
    click_scores,
    evaluate_model,
    evaluate_popularity,
    evaluate_ranking,
    evaluate_sampled,
)
from mtrec.core.multitask import MultiTaskModel
from mtrec.data.splitting import TARGET, TEST, TRAIN, VALID
from mtrec.data.tensors import (
    domain_items,
    fixed_task,
    popularity,
    ranking_task,
    sampled_task,
    task_columns,
)
from mtrec.io import read_json, write_atomic, write_json
from mtrec.stages import baselines, transfer
from mtrec.stages.modeling import ProcessedData, load_checkpoint, load_processed, transferred_path

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
TABLE_FILE = "results.md"
COLD = "cold"
# Cold items (test rows whose item has no target training interaction), ranked two ways:
# among the cold items only (item cold start: which new item will the user take?) and among
# every target item (what a deployed ranking shows).
COLD_ITEM, COLD_ITEM_FULL = "cold_item", "cold_item_full"


@dataclass
class TestSet:
    """Everything the test metrics need, built once per split."""

    rows: dict
    ranking: RankingTask
    sampled: SampledTask | None
    hash: str
    # COLD_ITEM / COLD_ITEM_FULL -> its ranking task; empty when no test item is cold.
    cold_items: dict[str, RankingTask] = field(default_factory=dict)


def test_set_hash(test_rows: pd.DataFrame) -> str:
    """Identifies the test split, so the champion gate only compares like with like."""
    key = test_rows[["user_idx", "item_idx", "click"]].sort_values(["user_idx", "item_idx"])
    return hashlib.sha256(
        pd.util.hash_pandas_object(key, index=False).to_numpy().tobytes()
    ).hexdigest()


def build_test_set(params: Params, data: ProcessedData) -> TestSet:
    """Target test rows, the full-ranking task (train+valid positives masked, cold users as a
    group) and the sampled task: on the dataset's fixed candidates when it ships them, else
    (``eval.sampled_negatives`` > 0) on drawn negatives."""
    seen = data.positives(TARGET, TRAIN, VALID)
    relevant = data.positives(TARGET, TEST)
    candidates = domain_items(data.items, TARGET)
    cold = np.setdiff1d(relevant["user_idx"].unique(), seen["user_idx"].unique())
    sampled = None
    if data.candidates is not None:
        sampled = fixed_task(data.candidates)
    elif params.eval.sampled_negatives:
        rng = np.random.default_rng(params.preprocess.seed)
        sampled = sampled_task(seen, relevant, candidates, params.eval.sampled_negatives, rng)
    test = data.rows(TARGET, TEST)
    return TestSet(
        rows=task_columns(test),
        ranking=ranking_task(seen, relevant, candidates, {COLD: cold}),
        sampled=sampled,
        hash=test_set_hash(test),
        cold_items=cold_item_tasks(data, seen, relevant, candidates),
    )


def cold_item_tasks(
    data: ProcessedData, seen: pd.DataFrame, relevant: pd.DataFrame, candidates: np.ndarray
) -> dict[str, RankingTask]:
    """Ranking tasks of the test rows whose item has no target training interaction; the
    user's warm test items are masked, so only cold items count as hits. None: no tasks."""
    trained = data.positives(TARGET, TRAIN)["item_idx"].unique()
    new = ~relevant["item_idx"].isin(trained)
    if not new.any():
        return {}
    pool = np.setdiff1d(candidates, trained)
    return {
        COLD_ITEM: ranking_task(seen[seen["item_idx"].isin(pool)], relevant[new], pool),
        COLD_ITEM_FULL: ranking_task(pd.concat([seen, relevant[~new]]), relevant[new], candidates),
    }


def cold_item_counts(test: TestSet) -> dict[str, int]:
    """How many test rows, items and candidates the cold-item tables stand on."""
    task = test.cold_items.get(COLD_ITEM)
    if task is None:
        return {"cold_item_rows": 0, "cold_items": 0, "cold_item_pool": 0}
    return {
        "cold_item_rows": len(task.relevant[0]),
        "cold_items": len(task.relevant[1].unique()),
        "cold_item_pool": len(task.candidates),
    }


def score_model(model: MultiTaskModel, test: TestSet, params: Params) -> dict[str, float]:
    """Every test metric of one model."""
    k = params.eval.k
    metrics = evaluate_model(model, test.rows, test.ranking, k, params.eval.user_block)
    return metrics | _candidate_metrics(model.score_matrix, click_scores(model), test, params)


def _candidate_metrics(
    matrix: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    rows: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    test: TestSet,
    params: Params,
) -> dict[str, float]:
    """The sampled protocol (``rows(users, items)`` row-wise scores) and the cold-item ranking
    (``matrix(users, items)`` all pairs), where the test set has them."""
    metrics = {}
    if test.sampled is not None:
        metrics |= evaluate_sampled(rows, test.sampled, params.eval.k)
    for name, task in test.cold_items.items():
        metrics |= _cold_item_metrics(
            name, lambda users, items=task.candidates: matrix(users, items), task, params
        )
    return metrics


def _cold_item_metrics(
    prefix: str, score: Callable[[torch.Tensor], torch.Tensor], task: RankingTask, params: Params
) -> dict[str, float]:
    metrics = evaluate_ranking(score, task, params.eval.k, params.eval.user_block)
    return {f"{prefix}_{name}": value for name, value in metrics.items()}


def score_popularity(data: ProcessedData, test: TestSet, params: Params) -> dict[str, dict]:
    """The item-popularity baseline (target train counts), deterministic: std 0."""
    k = params.eval.k
    train = data.positives(TARGET, TRAIN)
    metrics = evaluate_popularity(
        popularity(train, test.ranking), test.ranking, k, params.eval.user_block
    )
    if test.sampled is not None:
        by_item = torch.as_tensor(np.bincount(train["item_idx"], minlength=data.meta["n_items"]))
        metrics |= evaluate_sampled(lambda _, items: by_item[items], test.sampled, k)
    for name, task in test.cold_items.items():
        counts = popularity(train, task).double()  # all 0 among cold items: ties, by item order
        metrics |= _cold_item_metrics(
            name, lambda users, c=counts: c.expand(len(users), -1), task, params
        )
    return {m: {"mean": v, "std": 0.0} for m, v in metrics.items()}


def score_baseline(models: list[BPRMF], test: TestSet, params: Params) -> dict[str, dict]:
    """A dot-product baseline's metrics (BPR-MF, LightGCN), mean ± std over its seeds."""
    k, per_seed = params.eval.k, []
    for model in models:
        metrics = evaluate_ranking(
            lambda users, m=model: m.score_matrix(users, test.ranking.candidates),
            test.ranking,
            k,
            params.eval.user_block,
        )
        per_seed.append(metrics | _candidate_metrics(model.score_matrix, model, test, params))
    return aggregate(per_seed) | {"per_seed": per_seed}


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """mean and sample std per metric over seeds (std 0 for one seed)."""
    out = {}
    for name in per_seed[0]:
        values = [m[name] for m in per_seed]
        out[name] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
    return out


def score_strategies(
    models: Iterable[tuple[str, list[MultiTaskModel]]], test: TestSet, params: Params
) -> dict[str, dict]:
    """mean ± std (and per-seed values) of every strategy's models."""
    out = {}
    for name, seeds in models:
        per_seed = [score_model(model, test, params) for model in seeds]
        out[name] = aggregate(per_seed) | {"per_seed": per_seed}
        log.info("%s: ndcg@%d %s", name, params.eval.k, out[name][f"ndcg@{params.eval.k}"])
    return out


def _cell(metrics: dict, column: str) -> str:
    value = metrics.get(column)
    if value is None:
        return "—"
    return f"{value['mean']:.4f} ± {value['std']:.4f}"


def results_table(report: dict) -> str:
    """Markdown tables of mean ± std per strategy (what ``make run`` prints)."""
    k = report["k"]
    columns = [f"ndcg@{k}", f"hr@{k}", f"recall@{k}", "mrr", "click_auc", "like_auc", "rating_rmse"]
    cold = [f"{COLD}_ndcg@{k}", f"{COLD}_hr@{k}", f"{COLD}_recall@{k}"]
    sampled = [f"sampled_ndcg@{k}", f"sampled_hr@{k}", "sampled_mrr"]
    domain = (
        f"Target domain {report['target']}"
        if report["protocol"] in ("cross-domain", "dataset")
        else "Single domain"
    )
    lines = [
        f"{domain}, protocol {report['protocol']}, test users: {report['test_users']} "
        f"({report['cold_users']} cold), seeds: {report['seeds']}",
        "",
    ]
    tables = [("all test users", columns)]
    if report["cold_users"]:
        tables.append((f"{report['cold_users']} cold users (no target training history)", cold))
    if report.get("cold_item_rows"):
        title = (
            f"{report['cold_item_rows']} test rows of {report['cold_items']} cold items (no "
            f"target training interaction), ranked among the {report['cold_item_pool']} cold "
            "items / among all target items"
        )
        columns = [f"{p}_{m}@{k}" for p in (COLD_ITEM, COLD_ITEM_FULL) for m in ("ndcg", "hr")]
        tables.append((title, columns))
    if report["sampled_negatives"]:
        drawn = "the dataset's fixed" if report.get("fixed_candidates") else "drawn"
        title = f"sampled: 1 positive + {report['sampled_negatives']} {drawn} negatives"
        tables.append((title, sampled))
    for title, cols in tables:
        lines += [
            f"**{title}**",
            "",
            "| strategy | " + " | ".join(cols) + " |",
            "|---" * (len(cols) + 1) + "|",
        ]
        lines += [
            f"| {name} | " + " | ".join(_cell(m, c) for c in cols) + " |"
            for name, m in report["strategies"].items()
        ]
        lines.append("")
    for name, gain in report.get("transfer_gain", {}).items():
        lines.append(
            f"Transfer gain ({name} - scratch) on ndcg@{k}: {gain['absolute']:+.4f} "
            f"({gain['relative']:+.1%})"
            + (f", {gain['stds']:.1f} x the larger std" if gain["stds"] is not None else "")
        )
    return "\n".join(lines).rstrip() + "\n"


def transfer_gains(strategies: dict, k: int) -> dict[str, dict[str, float]]:
    """Each strategy's NDCG@K gain over ``scratch`` (absolute, relative, in units of std)."""
    metric = f"ndcg@{k}"
    if "scratch" not in strategies:
        return {}
    base = strategies["scratch"][metric]
    gains = {}
    for name, values in strategies.items():
        if name in ("scratch", "popularity", *baselines.NAMES):
            continue
        diff = values[metric]["mean"] - base["mean"]
        spread = max(values[metric]["std"], base["std"])
        gains[name] = {
            "absolute": diff,
            "relative": diff / base["mean"] if base["mean"] else 0.0,
            "stds": diff / spread if spread else None,
        }
    return gains


def evaluation_report(
    params: Params,
    data: ProcessedData,
    models: dict,
    trained_baselines: dict[str, list[BPRMF]] | None = None,
) -> dict:
    """Scores of every strategy's models and the baselines (popularity, and the trained ones
    by name, e.g. BPR-MF and LightGCN, when given) on the test split of ``data``."""
    test = build_test_set(params, data)
    strategies = score_strategies(models.items(), test, params)
    strategies["popularity"] = score_popularity(data, test, params)
    for name, seeds in (trained_baselines or {}).items():
        strategies[name] = score_baseline(seeds, test, params)
    return {
        "k": params.eval.k,
        "seeds": list(params.eval.seeds),
        "protocol": params.protocol.name,
        "target": params.target.domain or params.target.genres,
        "train_fraction": params.target.train_fraction,
        "test_users": len(test.ranking.users),
        "cold_users": int(test.ranking.groups[COLD].sum()),
        **cold_item_counts(test),
        "sampled_negatives": test.sampled.items.shape[1] - 1 if test.sampled is not None else 0,
        "fixed_candidates": data.candidates is not None,
        "test_hash": test.hash,
        "strategies": strategies,
        "transfer_gain": transfer_gains(strategies, params.eval.k),
    }


def cv_selection(params: Params) -> dict | None:
    """The strategy with the best cross-validated NDCG (``registry.strategy: cv_best``)."""
    if params.preprocess.cv_folds < 2:
        return None
    scores = {
        name: read_json(transfer.report_path(params, name))["cv"]
        for name in params.transfer.strategies
    }
    return {
        "folds": params.preprocess.cv_folds,
        "metric": f"ndcg@{params.eval.k}",
        "scores": scores,
        "selected": max(scores, key=lambda n: scores[n]["mean"]),
    }


def run(params: Params) -> None:
    """Evaluate each trained target model and the popularity baseline; write metrics."""
    data = load_processed(params)
    models = {
        name: [load_checkpoint(transferred_path(params, name, s)) for s in params.eval.seeds]
        for name in params.transfer.strategies
    }
    report = evaluation_report(params, data, models, baselines.load_baselines(params))
    cv = cv_selection(params)
    if cv:
        report["cv"] = cv
    write_json(params.paths.report(METRICS_FILE), report)
    table = results_table(report)
    write_atomic(params.paths.report(TABLE_FILE), lambda p: p.write_text(table))
    log.info("\n%s", table)
