"""A finished run's result in a few lines: the gates, the registered version and its aliases,
the headline metrics. The training DAG's ``register`` task logs it and returns it (the Airflow
UI shows it under the task's XCom), so an operator needs no file to see what a run did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtrec.config import PARAMS_FILE, load_params
from mtrec.io import read_json

REGISTRATION = "registration.json"
METRICS = "metrics.json"
HEADLINE = ("ndcg", "hr", "recall")  # the ranking metrics, @K


def run_summary(workspace: str | Path) -> dict[str, Any]:
    """The result of the run in ``workspace`` (after its register stage)."""
    workspace = Path(workspace)
    params = load_params(workspace / PARAMS_FILE)
    reports = workspace / params.paths.reports
    registration = read_json(reports / REGISTRATION)
    metrics = read_json(reports / METRICS)
    k = metrics["k"]
    strategies = metrics["strategies"]

    def headline(strategy: str) -> dict[str, str]:
        scores = strategies[strategy]
        return {
            f"{m}@{k}": f"{scores[f'{m}@{k}']['mean']:.4f} ± {scores[f'{m}@{k}']['std']:.4f}"
            for m in HEADLINE
            if f"{m}@{k}" in scores
        }

    decision = registration["decision"]
    return {
        "model": f"{registration['model_name']} v{registration['version']}",
        "aliases": ["@" + a for a in registration["aliases"]],
        "promoted": decision["promote"],
        "gates": {
            c["gate"]: ("passed" if c["passed"] else "FAILED") + f": {c['detail']}"
            for c in decision["checks"]
        },
        "metrics": {name: headline(name) for name in strategies},
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as log lines, one fact each."""
    lines = [
        f"registered {summary['model']} -> {', '.join(summary['aliases']) or 'no alias'}"
        + (" (promoted to @champion)" if summary["promoted"] else " (not promoted)")
    ]
    lines += [f"gate {gate}: {result}" for gate, result in summary["gates"].items()]
    lines += [
        f"{name}: " + ", ".join(f"{m} {v}" for m, v in scores.items())
        for name, scores in summary["metrics"].items()
    ]
    return lines
