"""Bring your own data (``data.dataset: files``): a small generated dataset in the canonical
schema (docs/data.md) runs the pipeline's stages unchanged, from CSV or parquet, and bad values
fail the gate naming the file and column."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtrec.config import PARAMS_FILE, Params, VolumeTolerance, deep_merge, load_params, parse_params
from mtrec.data.canonical import CanonicalTables
from mtrec.data.files import load_files
from mtrec.data.validation import validate_tables
from mtrec.errors import DataSourceError, DataValidationError
from mtrec.stages import baselines, evaluate, stage_runner

from ..conftest import PROJECT_ROOT

CATEGORIES = ["books", "games", "music", "tools"]
TARGET = "tools"
N_USERS, N_ITEMS, N_ROWS = 60, 80, 1500
WORDS = ["red", "blue", "green", "small", "large", "classic", "modern", "deluxe"]


def make_dataset(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interactions and items in the canonical schema; users lean to two categories, so there
    is something to learn and to transfer."""
    rng = np.random.default_rng(seed)
    category = np.arange(N_ITEMS) % len(CATEGORIES)
    items = pd.DataFrame(
        {
            "item": np.arange(1, N_ITEMS + 1),
            "title": [
                f"{CATEGORIES[c]} {WORDS[i % 8]} {WORDS[(i * 3) % 8]} no {i}"
                for i, c in enumerate(category)
            ],
            "categories": [[CATEGORIES[c]] for c in category],
            "year": 2000 + np.arange(N_ITEMS) % 20,
        }
    )
    liked = rng.integers(len(CATEGORIES), size=(N_USERS, 2))
    weights = np.full((N_USERS, N_ITEMS), 1.0)
    for u in range(N_USERS):
        weights[u, np.isin(category, liked[u])] = 6.0
    rows = []
    per_user = rng.multinomial(N_ROWS - 5 * N_USERS, np.full(N_USERS, 1 / N_USERS)) + 5
    for u, n in enumerate(per_user):
        chosen = rng.choice(
            N_ITEMS, size=min(n, N_ITEMS), replace=False, p=weights[u] / weights[u].sum()
        )
        for i in chosen:
            fond = category[i] in liked[u]
            rows.append((u + 1, i + 1, int(rng.integers(3, 6) if fond else rng.integers(1, 4))))
    inter = pd.DataFrame(rows, columns=["user", "item", "rating"])
    inter["timestamp"] = 1_600_000_000 + rng.permutation(len(inter)) * 3600
    return inter, items


def write_csv(folder: Path, inter: pd.DataFrame, items: pd.DataFrame) -> dict[str, str]:
    """The two CSV files (categories ``|``-separated); returns the ``data.files`` params."""
    folder.mkdir(parents=True, exist_ok=True)
    inter.to_csv(folder / "interactions.csv", index=False)
    items.assign(categories=items["categories"].str.join("|")).to_csv(
        folder / "items.csv", index=False
    )
    return {"interactions": str(folder / "interactions.csv"), "items": str(folder / "items.csv")}


def pipeline_params(tmp: Path, files: dict[str, str], genres: list[str] | None = None) -> Params:
    """params.yaml pointed at ``files``, every output under ``tmp``, tiny training."""
    gx_root = tmp / "gx_root"
    if not gx_root.exists():  # GX writes Data Docs under its root: use a copy of the suites
        shutil.copytree(
            PROJECT_ROOT / "gx", gx_root / "gx", ignore=shutil.ignore_patterns("uncommitted")
        )
    paths = {
        name: str(tmp / name)
        for name in (
            "staged",
            "interim",
            "processed",
            "embeddings",
            "pretrained",
            "transferred",
            "baselines",
            "reports",
            "accepted",
        )
    }
    # 80 items in four categories: too few to rank each valid positive against 100 negatives.
    train = {"epochs": 1, "batch_size": 512, "valid_negatives": 10}
    return load_params(
        PROJECT_ROOT / PARAMS_FILE,
        {
            "paths": paths,
            "data": {
                "dataset": "files",
                "raw_dir": str(Path(files["interactions"]).parent),
                "files": {**files, "rating_scale": [1.0, 5.0], "genres": genres or []},
            },
            "validate": {"gx_root": str(gx_root)},
            "target": {"domain": None, "genres": [TARGET]},
            "protocol": {"name": "cross-domain"},
            "preprocess": {"cv_folds": 0, "outliers": {"rule": "none"}},
            "model": {"item_encoder": "id"},
            "pretrain": train,
            "transfer": {"strategies": ["scratch", "finetune"], "train": train},
            "baselines": {"bpr": {"epochs": 1}, "lightgcn": {"epochs": 1}},
            "eval": {"seeds": [0], "sampled_negatives": 0},
            "registry": {
                "strategy": "finetune",
                "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
                "artifact_root": str(tmp / "mlartifacts"),
                "model_name": "mtrec-files-test",
                "experiment": "mtrec-files-test",
            },
        },
    )


def test_generated_csv_runs_the_pipeline_unchanged(tmp_path) -> None:
    inter, items = make_dataset()
    params = pipeline_params(tmp_path, write_csv(tmp_path / "my-data", inter, items))
    for stage in ("ingest", "validate", "preprocess", "pretrain", "transfer"):
        stage_runner(stage)(params)
    baselines.run(params)  # evaluate scores the single-domain baselines beside the strategies
    stage_runner("evaluate")(params)

    canonical = CanonicalTables.load(params.paths.interim)
    assert canonical.dataset == "files" and len(canonical.interactions) == len(inter)
    assert canonical.interactions["like"].sum() == (inter["rating"] >= 4).sum()
    validation = json.loads(params.paths.report("validation.json").read_text())
    assert validation["success"] and validation["rows"]["items"] == N_ITEMS
    meta = json.loads((Path(params.paths.processed) / "meta.json").read_text())
    assert meta["genres"] == CATEGORIES and meta["target_genres"] == [TARGET]
    assert meta["positives"]["target/test"] > 0 and meta["positives"]["source/train"] > 0
    metrics = json.loads(params.paths.report(evaluate.METRICS_FILE).read_text())
    assert {"scratch", "finetune"} <= set(metrics["strategies"])
    # Data Docs went to the copy of the suites, not the project's gx/
    assert (tmp_path / "gx_root" / "gx" / "uncommitted").exists()


def test_parquet_reads_the_same_tables(tmp_path) -> None:
    inter, items = make_dataset()
    csv = write_csv(tmp_path / "csv", inter, items)
    (tmp_path / "pq").mkdir()
    parquet = {
        "interactions": str(tmp_path / "pq" / "i.parquet"),
        "items": str(tmp_path / "pq" / "t.parquet"),
    }
    inter.to_parquet(parquet["interactions"])
    items.to_parquet(parquet["items"])
    from_csv, from_parquet = (
        load_files(pipeline_params(tmp_path, files).data) for files in (csv, parquet)
    )
    for name, frame in from_csv.frames().items():
        pd.testing.assert_frame_equal(
            frame, getattr(from_parquet, name), check_dtype=False, obj=name
        )
    report = validate_tables(from_parquet, tmp_path / "gx_root", None, VolumeTolerance())
    assert report.success, report.summary()


def test_bad_values_fail_the_gate_naming_file_and_column(tmp_path) -> None:
    inter, items = make_dataset()
    inter.loc[[3, 30], "rating"] = 7
    items.loc[5, "title"] = None
    items.at[6, "categories"] = ["tols"]  # a typo of a declared genre
    files = write_csv(tmp_path / "my-data", inter, items)
    params = pipeline_params(tmp_path, files, genres=CATEGORIES)
    stage_runner("ingest")(params)
    with pytest.raises(DataValidationError) as failed:
        stage_runner("validate")(params)
    message = str(failed.value)
    assert "interactions.csv, column 'rating': expect_column_values_to_be_between" in message
    assert f"2 of {len(inter)} rows, e.g. ['7', '7']" in message
    assert "items.csv, column 'title': expect_column_values_to_not_be_null" in message
    assert "items.csv, column 'categories': expect_column_values_to_be_in_set" in message
    assert "1 of 80 rows, e.g. ['tols']" in message
    assert not Path(params.paths.accepted, "profile.json").exists()


def test_wrong_file_type_is_a_clear_error(tmp_path) -> None:
    files = {"interactions": str(tmp_path / "inter.json"), "items": str(tmp_path / "items.csv")}
    with pytest.raises(DataSourceError, match=r"data\.files\.interactions must end in \.csv"):
        load_files(pipeline_params(tmp_path, files).data)


def test_a_single_domain_run_needs_no_timestamp(tmp_path, caplog) -> None:
    inter, items = make_dataset()
    files = write_csv(tmp_path / "my-data", inter.drop(columns="timestamp"), items)
    single = {"protocol": {"name": "recbole-general", "recbole": {"k_core": 0}}}
    params = pipeline_params(tmp_path, files).to_dict()
    params["transfer"]["strategies"] = ["scratch"]
    params["registry"]["strategy"] = "scratch"
    params["gates"]["require_transfer_gain"] = False
    params = parse_params(deep_merge(params, single))
    with caplog.at_level(logging.WARNING, logger="mtrec.data.files"):
        for stage in ("ingest", "validate", "preprocess", "pretrain"):
            stage_runner(stage)(params)
    assert "no timestamp column" in caplog.text
    # Nothing to pretrain: the output says why instead of being an empty folder.
    assert [p.name for p in Path(params.paths.pretrained).iterdir()] == ["SKIPPED.txt"]
    meta = json.loads((Path(params.paths.processed) / "meta.json").read_text())
    assert meta["positives"]["target/test"] > 0
