"""Cross-validated strategy selection, run through the real stages on the bundled data."""

import json

import pytest

from mtrec.config import load_params
from mtrec.data.canonical import CanonicalTables
from mtrec.errors import ConfigError
from mtrec.io import write_json
from mtrec.stages import baselines, evaluate, preprocess, pretrain, transfer
from mtrec.stages.modeling import transferred_path
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


def test_ranking_first_training_runs_under_every_kind_of_strategy(
    tmp_path, canonical: CanonicalTables
):
    """Sampled softmax over a two-tower content score with fresh negatives, early-stopped on
    valid NDCG: parameter transfer (l2sp) and instance transfer (joint) both train with it."""
    names = ("interim", "processed", "pretrained", "transferred", "reports", "accepted")
    paths = {name: str(tmp_path / name) for name in names}
    ranking = {
        "epochs": 2,
        "click_loss": "softmax",
        "early_stopping": "ndcg",
        "resample_negatives": True,
        "weighting": "gradnorm",
        "max_minutes": 30.0,
    }
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            "eval": {"seeds": [0]},
            "model": {"dot_product": True, "item_tower": "content", "click_mlp": False},
            "pretrain": ranking,
            "transfer": {"strategies": ["scratch", "l2sp", "joint"], "train": ranking},
            "registry": {"strategy": "l2sp"},
        },
    )
    canonical.save(paths["interim"])
    write_json(params.paths.report(REPORT), {"success": True})
    for stage in (preprocess, pretrain, transfer):
        stage.run(params)
    for name in ("l2sp", "joint"):
        seed = json.loads(transfer.report_path(params, name).read_text())["seeds"]["seed0"]
        assert 0 <= seed["best_epoch"] <= seed["epochs_run"] <= 2
        assert transferred_path(params, name, 0).exists()


def test_ranking_losses_need_ndcg_early_stopping_and_ccl_needs_cosines():
    with pytest.raises(ConfigError, match="set early_stopping ndcg"):
        load_params(
            PROJECT_ROOT / "params.yaml",
            {"pretrain": {"click_loss": "bpr", "early_stopping": "loss"}},
        )
    ccl = {"click_loss": "ccl", "early_stopping": "ndcg"}
    with pytest.raises(ConfigError, match="similarity cosine"):
        load_params(PROJECT_ROOT / "params.yaml", {"transfer": {"train": ccl}})
    with pytest.raises(ConfigError, match="shape the retrieval score"):
        load_params(
            PROJECT_ROOT / "params.yaml",
            {"model": {"dot_product": False, "similarity": "cosine"}},
        )
    two_tower = {"dot_product": True, "similarity": "cosine", "click_mlp": False}
    params = load_params(
        PROJECT_ROOT / "params.yaml", {"model": two_tower, "transfer": {"train": ccl}}
    )
    assert params.transfer.train.click_loss == "ccl"
