"""Stage ``evaluate``: every strategy and seed on the target test split, mean ± std."""

from __future__ import annotations

import hashlib
import logging
import statistics

import pandas as pd

from mtrec.config import Params
from mtrec.core.evaluation import evaluate_model, evaluate_popularity
from mtrec.data.splitting import TARGET, TEST, TRAIN, VALID
from mtrec.data.tensors import domain_items, popularity, ranking_task, task_columns
from mtrec.io import write_atomic, write_json
from mtrec.stages.modeling import load_checkpoint, load_processed, transferred_path

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
TABLE_FILE = "results.md"


def _aggregate(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for name in per_seed[0]:
        values = [m[name] for m in per_seed]
        out[name] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
    return out


def test_set_hash(test_rows: pd.DataFrame) -> str:
    """Identifies the test split, so the champion gate only compares like with like."""
    key = test_rows[["user_idx", "item_idx", "click"]].sort_values(["user_idx", "item_idx"])
    return hashlib.sha256(
        pd.util.hash_pandas_object(key, index=False).to_numpy().tobytes()
    ).hexdigest()


def results_table(report: dict) -> str:
    """Markdown table of mean ± std per strategy (what ``make run`` prints)."""
    k = report["k"]
    columns = [f"ndcg@{k}", f"hr@{k}", f"recall@{k}", "mrr", "click_auc", "like_auc", "rating_rmse"]
    lines = [
        f"Target domain {report['target_genres']}, test users: {report['test_users']}, "
        f"seeds: {report['seeds']}",
        "",
        "| strategy | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for name, metrics in report["strategies"].items():
        cells = [
            f"{metrics[c]['mean']:.4f} ± {metrics[c]['std']:.4f}" if c in metrics else "—"
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    gain = report.get("transfer_gain")
    if gain:
        lines += [
            "",
            f"Transfer gain (finetune - scratch) on ndcg@{k}: "
            f"{gain['absolute']:+.4f} ({gain['relative']:+.1%})",
        ]
    return "\n".join(lines) + "\n"


def run(params: Params) -> None:
    """Evaluate each trained target model and the popularity baseline; write metrics."""
    data = load_processed(params)
    k, block = params.eval.k, params.eval.user_block
    test = data.rows(TARGET, TEST)
    rows = task_columns(test)
    task = ranking_task(
        data.positives(TARGET, TRAIN, VALID),
        data.positives(TARGET, TEST),
        domain_items(data.items, TARGET),
    )
    strategies: dict[str, dict] = {}
    for name in params.transfer.strategies:
        per_seed = [
            evaluate_model(
                load_checkpoint(transferred_path(params, name, seed)), rows, task, k, block
            )
            for seed in params.eval.seeds
        ]
        strategies[name] = _aggregate(per_seed) | {"per_seed": per_seed}
        log.info("%s: %s", name, strategies[name][f"ndcg@{k}"])
    pop = evaluate_popularity(popularity(data.positives(TARGET, TRAIN), task), task, k, block)
    strategies["popularity"] = {m: {"mean": v, "std": 0.0} for m, v in pop.items()}
    report = {
        "k": k,
        "seeds": list(params.eval.seeds),
        "target_genres": params.target.genres,
        "test_users": len(task.users),
        "test_hash": test_set_hash(test),
        "strategies": strategies,
    }
    if {"scratch", "finetune"} <= set(strategies):
        base = strategies["scratch"][f"ndcg@{k}"]["mean"]
        tuned = strategies["finetune"][f"ndcg@{k}"]["mean"]
        report["transfer_gain"] = {
            "absolute": tuned - base,
            "relative": (tuned - base) / base if base else 0.0,
        }
    write_json(params.paths.report(METRICS_FILE), report)
    table = results_table(report)
    write_atomic(params.paths.report(TABLE_FILE), lambda p: p.write_text(table))
    log.info("\n%s", table)
