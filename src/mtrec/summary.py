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
    """The result of the run in ``workspace`` (after its register stage), flat: the UI shows a
    flat XCom value whole, where it would fold nested ones."""
    workspace = Path(workspace)
    params = load_params(workspace / PARAMS_FILE)
    reports = workspace / params.paths.reports
    registration = read_json(reports / REGISTRATION)
    metrics = read_json(reports / METRICS)
    k = metrics["k"]
    decision = registration["decision"]
    summary: dict[str, Any] = {
        "model": f"{registration['model_name']} v{registration['version']}",
        "aliases": ", ".join("@" + a for a in registration["aliases"]) or "none",
        "promoted": decision["promote"],
    }
    for check in decision["checks"]:
        verdict = "passed" if check["passed"] else "FAILED"
        summary[f"gate {check['gate']}"] = f"{verdict}: {check['detail']}"
    for name, scores in metrics["strategies"].items():
        shown = [f"{m}@{k}" for m in HEADLINE if f"{m}@{k}" in scores]
        summary[name] = ", ".join(
            f"{m} {scores[m]['mean']:.4f} ± {scores[m]['std']:.4f}" for m in shown
        )
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as log lines, one fact each."""
    return [f"{key}: {value}" for key, value in summary.items()]
