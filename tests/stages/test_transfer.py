"""Cross-validated strategy selection, run through the real stages on the bundled data."""

import json

from mtrec.config import load_params
from mtrec.data.canonical import CanonicalTables
from mtrec.io import write_json
from mtrec.stages import baselines, evaluate, preprocess, pretrain, transfer
from mtrec.stages.register import registered_strategy
from mtrec.stages.validate import REPORT

from ..conftest import PROJECT_ROOT


def test_cv_selects_a_strategy_that_cv_best_registers(tmp_path, canonical: CanonicalTables):
    paths = {
        name: str(tmp_path / name)
        for name in (
            "interim",
            "processed",
            "pretrained",
            "transferred",
            "baselines",
            "reports",
            "accepted",
        )
    }
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            "eval": {"seeds": [0]},
            "preprocess": {"cv_folds": 2},
            "pretrain": {"epochs": 1},
            "transfer": {"strategies": ["scratch", "finetune"], "train": {"epochs": 1}},
            "registry": {"strategy": "cv_best"},
            "baselines": {"bpr": {"epochs": 1}, "lightgcn": {"epochs": 1}},
        },
    )
    canonical.save(paths["interim"])
    write_json(params.paths.report(REPORT), {"success": True})
    for stage in (preprocess, pretrain, transfer, baselines, evaluate):
        stage.run(params)

    cv = json.loads(params.paths.report(evaluate.METRICS_FILE).read_text())["cv"]
    assert cv["folds"] == 2 and cv["metric"] == "ndcg@10"
    assert set(cv["scores"]) == {"scratch", "finetune"}
    for scores in cv["scores"].values():
        assert len(scores["per_fold"]) == 2
        assert all(0.0 < s <= 1.0 for s in scores["per_fold"])
    best = max(cv["scores"], key=lambda name: cv["scores"][name]["mean"])
    assert cv["selected"] == best == registered_strategy(params)
    for name in ("scratch", "finetune"):
        report = json.loads(transfer.report_path(params, name).read_text())
        assert report["cv"] == cv["scores"][name]
