"""The run summary the training DAG's register task logs and returns (shown in the UI)."""

from __future__ import annotations

import json
from pathlib import Path

from mtrec.config import load_params
from mtrec.summary import run_summary, summary_lines

from .conftest import PROJECT_ROOT


def _score(mean: float) -> dict[str, float]:
    return {"mean": mean, "std": 0.01}


def test_the_summary_names_gates_version_aliases_and_metrics(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    reports = tmp_path / load_params(tmp_path / "params.yaml").paths.reports
    reports.mkdir()
    checks = [
        {"gate": "data", "passed": True, "detail": "validation passed"},
        {"gate": "transfer", "passed": False, "detail": "finetune ndcg@10 0.1 vs scratch 0.2"},
    ]
    (reports / "registration.json").write_text(
        json.dumps(
            {
                "model_name": "mtrec",
                "version": "3",
                "aliases": ["challenger"],
                "decision": {"promote": False, "passed": False, "checks": checks},
            }
        )
    )
    strategies = {
        "finetune": {"ndcg@10": _score(0.1), "hr@10": _score(0.2), "click_auc": _score(0.8)},
        "popularity": {"ndcg@10": _score(0.05)},
    }
    (reports / "metrics.json").write_text(json.dumps({"k": 10, "strategies": strategies}))

    summary = run_summary(tmp_path)
    assert summary["model"] == "mtrec v3" and summary["aliases"] == "@challenger"
    assert summary["promoted"] is False
    assert summary["gate transfer"].startswith("FAILED: finetune ndcg@10")
    assert summary["finetune"] == "ndcg@10 0.1000 ± 0.0100, hr@10 0.2000 ± 0.0100"
    assert summary["popularity"] == "ndcg@10 0.0500 ± 0.0100"
    assert all(not isinstance(v, dict | list) for v in summary.values())  # shown whole in the UI
    json.dumps(summary)  # an XCom value
    assert "gate data: passed: validation passed" in summary_lines(summary)
