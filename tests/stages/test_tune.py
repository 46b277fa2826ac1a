"""Hyperparameter search: real Optuna trials on the bundled data, each one in MLflow."""

import json

import mlflow
import pytest

from mtrec.config import load_params
from mtrec.errors import ConfigError
from mtrec.io import write_json
from mtrec.stages import preprocess, pretrain, tune
from mtrec.stages.validate import REPORT

from ..conftest import PROJECT_ROOT


def _params(tmp_path, **overrides):
    paths = {
        n: str(tmp_path / n)
        for n in ("interim", "processed", "pretrained", "transferred", "reports", "accepted")
    }
    return load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            "registry": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            "eval": {"seeds": [0]},
            "pretrain": {"epochs": 1},
            "transfer": {"train": {"epochs": 1}},
        }
        | overrides,
    )


def test_search_logs_every_trial_and_writes_the_best_point(tmp_path, canonical, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = _params(tmp_path, tune={"trials": 3, "sampler": "random"})
    canonical.save(params.paths.interim)
    write_json(params.paths.report(REPORT), {"success": True})
    for stage in (preprocess, pretrain, tune):
        stage.run(params)

    best = json.loads((params.paths.report(tune.REPORTS) / "best.json").read_text())
    assert best["strategy"] == "finetune" and 0.0 < best["valid_ndcg_at_10"] <= 1.0
    assert set(best["params"]) == set(params.tune.space)
    assert best["apply"].startswith("dvc exp run -S transfer.train.")
    trials = (params.paths.report(tune.REPORTS) / "trials.csv").read_text().splitlines()
    assert len(trials) == 1 + 3
    runs = mlflow.search_runs(
        experiment_names=[params.registry.experiment],
        filter_string="tags.mlflow.runName LIKE 'trial-%'",
    )
    assert len(runs) == 3
    assert runs["metrics.valid_ndcg_at_10"].max() == pytest.approx(best["valid_ndcg_at_10"])


def test_model_keys_need_a_strategy_without_a_source(tmp_path) -> None:
    params = _params(tmp_path, tune={"space": {"model.dropout": {"low": 0.0, "high": 0.3}}})
    with pytest.raises(ConfigError, match="changes the model"):
        tune.check_space(params)


def test_unknown_keys_are_refused_before_any_training(tmp_path) -> None:
    params = _params(tmp_path, tune={"space": {"transfer.train.lrate": {"low": 0.1, "high": 1}}})
    with pytest.raises(ConfigError, match="lrate"):
        tune.check_space(params)


def test_the_space_takes_choices_such_as_the_click_loss(tmp_path) -> None:
    import optuna

    space = {
        "transfer.train.click_loss": {"choices": ["bce", "softmax", "bpr"]},
        "transfer.train.lr": {"low": 0.001, "high": 0.01, "log": True},
    }
    ranking = {"train": {"epochs": 1, "early_stopping": "ndcg"}}
    params = _params(tmp_path, tune={"space": space}, transfer=ranking)
    tune.check_space(params)
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    drawn = {
        tune.suggest(study.ask(), params.tune.space)["transfer.train.click_loss"] for _ in "x" * 30
    }
    assert drawn == {"bce", "softmax", "bpr"}
    # Every choice is checked against params before any training.
    bad = {"transfer.train.click_loss": {"choices": ["bce", "hinge"]}}
    with pytest.raises(ConfigError, match="click_loss"):
        tune.check_space(_params(tmp_path, tune={"space": bad}, transfer=ranking))
    with pytest.raises(ConfigError, match="choices need"):
        _params(tmp_path, tune={"space": {"model.dot_product": {"choices": []}}})
