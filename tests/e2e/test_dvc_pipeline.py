"""`dvc repro` over the whole pipeline on the bundled data, as a data scientist runs it."""

import json
import re

import mlflow
import pandas as pd
import yaml

from ..conftest import run_dvc, tool_env

ALL_STAGES = {
    "ingest",
    "validate",
    "preprocess",
    "embed_items",
    "pretrain",
    "transfer@scratch",
    "transfer@finetune",
    "baselines",
    "evaluate",
    "curve@0.2",
    "report",
    "register",
    "recommend",
}


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w@.]+)'", output))


def _set_params(root, **sections) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in sections.items():
        for key, value in values.items():
            node = params[section]
            *path, leaf = key.split(".")
            for part in path:
                node = node[part]
            node[leaf] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _client(root) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=tool_env(root.parent)["MLFLOW_TRACKING_URI"])


def _check_served_model(root) -> None:
    """The registered pyfunc returns top-K target items and never one the user has seen."""
    mlflow.set_tracking_uri(tool_env(root.parent)["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model("models:/mtrec@challenger")
    processed = root / "data" / "processed"
    items = pd.read_parquet(processed / "items.parquet")
    inter = (
        pd.read_parquet(processed / "interactions.parquet")
        .merge(pd.read_parquet(processed / "users.parquet"), on="user_idx")
        .merge(items[["item_idx", "item"]], on="item_idx")
    )
    users = [1, 414]
    recs = model.predict(pd.DataFrame({"user": users}), params={"k": 20})
    assert list(recs.groupby("user").size()) == [20, 20]
    target_items = set(items.loc[items["domain"] == "target", "item"])
    assert set(recs["item"]) <= target_items
    for user in users:
        seen = set(inter.loc[(inter["user"] == user) & (inter["click"] == 1), "item"])
        assert not seen & set(recs.loc[recs["user"] == user, "item"])


def _check_recommendations(root, version: str) -> None:
    """Batch recommendations: top-K target items for every processed user, none already seen,
    from the version behind @champion."""
    processed = root / "data" / "processed"
    users = pd.read_parquet(processed / "users.parquet")
    items = pd.read_parquet(processed / "items.parquet")
    seen = (
        pd.read_parquet(processed / "interactions.parquet")
        .query("click == 1")
        .merge(users, on="user_idx")
        .merge(items[["item_idx", "item"]], on="item_idx")[["user", "item"]]
    )
    recs = pd.read_parquet(root / "data" / "recommendations.parquet")
    assert set(recs["user"]) == set(users["user"])
    assert (recs.groupby("user").size() == 10).all()
    assert set(recs["item"]) <= set(items.loc[items["domain"] == "target", "item"])
    assert recs.merge(seen, on=["user", "item"]).empty
    report = json.loads((root / "reports" / "recommend.json").read_text())
    assert (report["version"], report["users"]) == (version, len(users))


def test_repro_runs_everything_then_caches_then_reruns_only_dependents(project) -> None:
    # One epoch decides nothing about transfer or popularity; this test is about caching and
    # promotion.
    _set_params(
        project,
        gates={"require_transfer_gain": False, "popularity_margin": None},
        pretrain={"epochs": 1},
        transfer={"train.epochs": 1},
    )
    first = run_dvc(project, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    assert _ran(first.stdout) == ALL_STAGES

    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    for strategy in ("scratch", "finetune", "popularity"):
        assert 0.0 < metrics["strategies"][strategy]["ndcg@10"]["mean"] <= 1.0
    for metric in ("click_auc", "like_auc", "rating_rmse", "hr@10", "recall@10"):
        assert metric in metrics["strategies"]["finetune"]
    assert "transfer_gain" in metrics
    assert "| finetune |" in (project / "reports" / "results.md").read_text()
    registration = json.loads((project / "reports" / "registration.json").read_text())
    assert registration["version"] == "1"
    assert registration["aliases"] == ["challenger", "champion"]

    # The run carries its lineage: params, dvc.lock, git revision (none in this copy).
    client = _client(project)
    version = client.get_model_version_by_alias("mtrec", "challenger")
    run = client.get_run(version.run_id)
    assert run.data.params["transfer.strategies"] == "['scratch', 'finetune']"
    assert "ndcg_at_10" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "lineage")}
    assert artifacts == {"lineage/dvc.lock", "lineage/params.yaml"}
    reports = {a.path for a in client.list_artifacts(version.run_id, "reports")}
    assert {"reports/transfer.md", "reports/transfer_curve.png", "reports/results.md"} <= reports
    plots = run_dvc(project, "plots", "show", "--json")
    assert plots.returncode == 0 and "transfer_curve.csv" in plots.stdout, plots.stderr

    _check_served_model(project)
    _check_recommendations(project, "1")

    again = run_dvc(project, "repro")
    assert again.returncode == 0, again.stderr
    # Only recommend, which reads @champion (the registry, not a file DVC can hash).
    assert _ran(again.stdout) == {"recommend"}

    # A training knob plus an impossible quality floor: only the dependent stages rerun, and
    # the new version becomes @challenger without taking @champion.
    _set_params(project, transfer={"train.lr": 0.002}, gates={"min_ndcg": 0.99})
    third = run_dvc(project, "repro")
    assert third.returncode == 0, third.stdout + third.stderr
    assert _ran(third.stdout) == ALL_STAGES - {
        "ingest",
        "validate",
        "preprocess",
        "embed_items",
        "pretrain",
        "baselines",  # reads baselines.*, not transfer.train.*
    }
    registration = json.loads((project / "reports" / "registration.json").read_text())
    assert registration["version"] == "2"
    assert registration["aliases"] == ["challenger"]
    assert str(client.get_model_version_by_alias("mtrec", "challenger").version) == "2"
    quality = client.get_model_version("mtrec", "2").tags["gate.quality"]
    assert quality.startswith("failed: ndcg@10")
    assert str(client.get_model_version_by_alias("mtrec", "champion").version) == "1"
    _check_recommendations(project, "1")  # still the champion's, not the new challenger's


def test_bad_data_stops_the_run_before_training(project) -> None:
    ratings_file = project / "data" / "ml-latest-small" / "ratings.csv"
    ratings = pd.read_csv(ratings_file)
    ratings.loc[[10, 20, 30], "rating"] = 11.0
    ratings.to_csv(ratings_file, index=False)
    result = run_dvc(project, "repro")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "ratings.csv, column 'rating'" in output
    assert "expect_column_values_to_be_between" in output
    assert "3 of 100836 rows" in output
    assert _ran(result.stdout) == {"ingest", "validate"}
    assert not (project / "models").exists()
