"""Cross-validated strategy selection, run through the real stages on the bundled data."""

import json

import pytest
import torch

from mtrec.config import load_params
from mtrec.core.evaluation import evaluate_popularity
from mtrec.data.canonical import CanonicalTables
from mtrec.data.splitting import TARGET, TRAIN, VALID
from mtrec.data.tensors import domain_items, ranking_task
from mtrec.errors import ConfigError
from mtrec.io import write_json
from mtrec.stages import baselines, evaluate, preprocess, pretrain, transfer
from mtrec.stages.modeling import load_processed, transferred_path, valid_monitor
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


def test_full_ranking_early_stopping_and_the_timing_the_bench_reads(
    tmp_path, canonical: CanonicalTables
):
    """valid_negatives 0: the monitor ranks every target item (as RecBole validates), with
    popularity's full-ranking valid NDCG as its floor; the training record carries the
    per-epoch (training seconds, valid score) curve, the stage's report never does."""
    names = ("interim", "processed", "pretrained", "transferred", "reports", "accepted")
    paths = {name: str(tmp_path / name) for name in names}
    train = {"epochs": 3, "early_stopping": "ndcg", "valid_negatives": 0}
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            "eval": {"seeds": [0]},
            "transfer": {"strategies": ["scratch"], "train": train},
            "registry": {"strategy": "scratch"},
        },
    )
    canonical.save(paths["interim"])
    write_json(params.paths.report(REPORT), {"success": True})
    preprocess.run(params)
    data = load_processed(params)
    full = valid_monitor(params, params.transfer.train, data, TARGET)
    sampled_cfg = params.transfer.train.model_copy(update={"valid_negatives": 100})
    sampled = valid_monitor(params, sampled_cfg, data, TARGET)
    # Popularity ranked among every target item, against the same positives by hand.
    seen, relevant = data.positives(TARGET, TRAIN), data.positives(TARGET, VALID)
    task = ranking_task(seen, relevant, domain_items(data.items, TARGET))
    clicks = torch.bincount(
        torch.as_tensor(seen["item_idx"].to_numpy(copy=True)), minlength=data.meta["n_items"]
    )
    popular = evaluate_popularity(clicks[task.candidates], task, 10, 256)["ndcg@10"]
    assert full.floor == pytest.approx(popular)
    assert full.floor < sampled.floor  # one positive among all items: a harder ranking

    model, info = transfer.train_strategy(
        params, data, "scratch", 0, transfer.target_rows(params, data), torch.device("cpu")
    )
    assert len(info["curve"]) == info["epochs_run"]
    seconds = [t for t, _ in info["curve"]]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert max(s for _, s in info["curve"]) == pytest.approx(full.score(model))  # the kept epoch

    transfer.run(params)
    seed = json.loads(transfer.report_path(params, "scratch").read_text())["seeds"]["seed0"]
    assert not {"train_seconds", "curve"} & set(seed)
