"""Every architecture runs through the real training and evaluation stages on the bundled data."""

import json

import pytest

from mtrec.config import load_params
from mtrec.core.models import ARCHITECTURES
from mtrec.io import write_json
from mtrec.stages import evaluate, preprocess, pretrain, transfer
from mtrec.stages.validate import REPORT

from ..conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def processed(tmp_path_factory, canonical) -> dict[str, str]:
    root = tmp_path_factory.mktemp("arch")
    paths = {n: str(root / n) for n in ("interim", "processed", "reports", "accepted")}
    params = load_params(PROJECT_ROOT / "params.yaml", {"paths": paths})
    canonical.save(paths["interim"])
    write_json(params.paths.report(REPORT), {"success": True})
    preprocess.run(params)
    return paths


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_architecture_trains_transfers_and_evaluates(processed, architecture, tmp_path) -> None:
    paths = processed | {n: str(tmp_path / n) for n in ("pretrained", "transferred", "reports")}
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            "model": {"architecture": architecture},
            "eval": {"seeds": [0]},
            "pretrain": {"epochs": 1},
            "transfer": {"train": {"epochs": 1}},
        },
    )
    for stage in (pretrain, transfer, evaluate):
        stage.run(params)
    metrics = json.loads(params.paths.report(evaluate.METRICS_FILE).read_text())
    for strategy in ("scratch", "finetune"):
        scores = metrics["strategies"][strategy]
        assert 0.0 < scores["ndcg@10"]["mean"] <= 1.0
        assert 0.5 < scores["click_auc"]["mean"] <= 1.0  # better than chance after one epoch


def test_every_transfer_strategy_runs_and_is_evaluated(processed, tmp_path) -> None:
    strategies = ["scratch", "zero_shot", "frozen", "finetune", "l2sp"]
    paths = processed | {n: str(tmp_path / n) for n in ("pretrained", "transferred", "reports")}
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            "eval": {"seeds": [0]},
            "pretrain": {"epochs": 1},
            "transfer": {"strategies": strategies, "train": {"epochs": 1}},
        },
    )
    for stage in (pretrain, transfer, evaluate):
        stage.run(params)
    report = json.loads(params.paths.report(transfer.REPORT).read_text())
    assert report["strategies"]["zero_shot"]["seed0"] == {"trained": False}
    metrics = json.loads(params.paths.report(evaluate.METRICS_FILE).read_text())
    assert set(metrics["strategies"]) == {*strategies, "popularity"}
    for name in strategies:
        assert 0.0 < metrics["strategies"][name]["ndcg@10"]["mean"] <= 1.0
