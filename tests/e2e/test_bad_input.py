"""The bad-input corpus: each case is made by the test from the bundled data after a good run
and must fail the data gate with a message naming the file, column, rule and count, leaving the
accepted data, models and @champion byte-identical.

Every case runs through the stage CLI (``mtrec ingest``, then ``mtrec validate``: what each
`dvc repro` and Airflow task runs), in-process; one case per raw file also runs through the
whole `dvc repro` (both files bad in one run), which must stop at `validate`, before any
training. The good run before them is the stage CLI in-process too, recorded in dvc.lock as
`dvc repro` records it (tests/e2e/test_dvc_pipeline.py runs the pipeline through `dvc repro`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from mtrec.__main__ import main
from mtrec.stages import STAGES

from ..conftest import BUNDLED, run_dvc, run_stages, tool_env

RATINGS, MOVIES = "ratings.csv", "movies.csv"


def _ratings(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / RATINGS)


def _save(frame: pd.DataFrame, root: Path, name: str = RATINGS) -> None:
    frame.to_csv(root / name, index=False)


def missing_column(root: Path) -> None:
    _save(_ratings(root).drop(columns="timestamp"), root)


def renamed_column(root: Path) -> None:
    _save(_ratings(root).rename(columns={"movieId": "movie_id"}), root)


def wrong_dtype(root: Path) -> None:
    frame = _ratings(root).astype({"rating": object})
    frame.loc[[7, 70, 700], "rating"] = "four"
    _save(frame, root)


def rating_out_of_range(root: Path) -> None:
    frame = _ratings(root)
    frame.loc[[7, 70, 700], "rating"] = 11.0
    _save(frame, root)


def nan_ids(root: Path) -> None:
    frame = _ratings(root)
    frame.loc[[7, 70, 700], "userId"] = None
    _save(frame, root)


def duplicated_rows(root: Path) -> None:
    frame = _ratings(root)
    _save(pd.concat([frame, frame.iloc[[7, 70, 700]]]), root)


def empty_file(root: Path) -> None:
    (root / RATINGS).write_bytes(b"")


def truncated_csv(root: Path) -> None:
    data = (root / RATINGS).read_bytes()
    cut = data.rindex(b"\n", 0, len(data) * 3 // 4) + 12  # mid-way through a line
    (root / RATINGS).write_bytes(data[:cut])


def non_utf8_bytes(root: Path) -> None:
    data = (root / MOVIES).read_bytes()
    data = data.replace(b"Toy Story (1995)", b"Toy Story \xe9\xe8 (1995)", 1)
    data = data.replace(b"Jumanji (1995)", b"Jumanji \xff (1995)", 1)
    (root / MOVIES).write_bytes(data)


def negative_timestamps(root: Path) -> None:
    frame = _ratings(root)
    frame.loc[[7, 70, 700], "timestamp"] = -86400
    _save(frame, root)


def unknown_item(root: Path) -> None:
    frame = _ratings(root)
    frame.loc[frame.groupby("userId").head(1).index[:2], "movieId"] = 99_999_999
    _save(frame, root)


def tenfold_rows(root: Path) -> None:
    frame = _ratings(root)
    offset = int(frame["userId"].max())
    copies = [frame.assign(userId=frame["userId"] + i * offset) for i in range(10)]
    _save(pd.concat(copies), root)


# case -> (corruption, fragments the error must contain: file, column, rule, count)
CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "missing column": (
        missing_column,
        ["ratings.csv, column 'timestamp'", "expect_column_to_exist", "the column is missing"],
    ),
    "renamed column": (
        renamed_column,
        ["ratings.csv, column 'movieId'", "expect_column_to_exist", "the column is missing"],
    ),
    "wrong dtype": (
        wrong_dtype,
        [
            "ratings.csv, column 'rating'",
            "expect_column_values_to_match_regex",
            "3 of 100836 rows",
            "'four'",
        ],
    ),
    "rating out of range": (
        rating_out_of_range,
        [
            "ratings.csv, column 'rating'",
            "expect_column_values_to_be_between",
            "3 of 100836 rows",
            "'11.0'",
        ],
    ),
    "NaN ids": (
        nan_ids,
        ["ratings.csv, column 'userId'", "expect_column_values_to_not_be_null", "3 of 100836 rows"],
    ),
    "duplicated rows": (
        duplicated_rows,
        [
            "ratings.csv, column 'userId,movieId,timestamp'",
            "expect_compound_columns_to_be_unique",
            "6 of 100839 rows",
        ],
    ),
    "empty file": (
        empty_file,
        [
            "ratings.csv, column 'userId'",
            "expect_column_to_exist",
            "ratings.csv, whole table: expect_table_row_count_to_be_between",
            "observed 0",
        ],
    ),
    "truncated CSV": (
        truncated_csv,
        ["ratings.csv, column 'timestamp'", "expect_column_values_to_not_be_null", "1 of "],
    ),
    "non-UTF-8 bytes": (
        non_utf8_bytes,
        [
            "movies.csv: encoding: not UTF-8 (2 lines, e.g. line 2, line 3)",
            "movies.csv, column 'title'",
            "expect_column_values_to_not_match_regex",
            "2 of 9742 rows",
        ],
    ),
    "negative timestamps": (
        negative_timestamps,
        [
            "ratings.csv, column 'timestamp'",
            "expect_column_values_to_be_between",
            "3 of 100836 rows",
            "'-86400'",
        ],
    ),
    "unknown item": (
        unknown_item,
        [
            "ratings.csv, column 'movieId'",
            "expect_column_values_to_be_in_set",
            "2 of 100836 rows",
            "'99999999'",
        ],
    ),
    "tenfold row-count jump": (
        tenfold_rows,
        ["ratings.csv, whole table: expect_table_row_count_to_be_between", "observed 1,008,360"],
    ),
}


def _tree_hash(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _accepted_state(root: Path) -> dict[str, object]:
    """Hashes of everything a bad run must not touch."""
    client = mlflow.MlflowClient(tracking_uri=tool_env(root.parent)["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("mtrec", "champion")
    artifacts = Path(client.get_run(champion.run_id).info.artifact_uri.removeprefix("file://"))
    return {
        # Write-audit-publish: the last good canonical tables, report and Data Docs stay.
        "canonical": _tree_hash(root / "data" / "interim"),
        "report": hashlib.sha256((root / "reports" / "validation.json").read_bytes()).hexdigest(),
        "data_docs": _tree_hash(root / "reports" / "data_docs"),
        "processed": _tree_hash(root / "data" / "processed"),
        "models": _tree_hash(root / "models"),
        "baseline": _tree_hash(root / "data" / "accepted"),
        "champion": (str(champion.version), champion.run_id),
        "champion_artifacts": _tree_hash(artifacts),
    }


# Under pytest-xdist (make test) the cases stay on one worker (tests/conftest.py: XDIST_GROUPS).
@pytest.fixture(scope="module")
def accepted(module_project: Path) -> tuple[Path, dict[str, object]]:
    """A project after one good run (so there is a champion and an accepted baseline)."""
    project = module_project
    params = yaml.safe_load((project / "params.yaml").read_text())
    # One epoch decides nothing about transfer, nor whether it beats popularity.
    params["gates"] |= {"require_transfer_gain": False, "popularity_margin": None}
    # Only what a champion needs: one epoch, no extra curve point (the default fraction's
    # point is evaluate's own).
    params["pretrain"]["epochs"] = params["transfer"]["train"]["epochs"] = 1
    params["curve"]["fractions"] = [params["target"]["train_fraction"]]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # Every stage in this process, then `dvc commit` records their outputs in dvc.lock: the
    # state a good `dvc repro` leaves, which the cases must not change.
    run_stages(project, *STAGES)
    committed = run_dvc(project, "commit", "--force", "--with-deps", "register")
    assert committed.returncode == 0, committed.stdout + committed.stderr
    assert run_dvc(project, "status", "register").stdout.strip().endswith("up to date.")
    return project, _accepted_state(project)


def _restore(raw: Path) -> None:
    shutil.rmtree(raw)
    shutil.copytree(BUNDLED, raw)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_the_data_gate_and_changes_nothing(
    accepted, case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project, before = accepted
    raw = project / "data" / "ml-latest-small"
    corrupt, fragments = CASES[case]
    monkeypatch.chdir(project)  # the stages read ./params.yaml, as under dvc repro
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tool_env(project.parent)["MLFLOW_TRACKING_URI"])
    try:
        corrupt(raw)
        assert main(["ingest"]) == 0, capsys.readouterr().err
        assert main(["validate"]) == 1  # the exit status that stops dvc repro and the DAG
        output = capsys.readouterr().err
        assert "mtrec validate: DataValidationError: data gate FAILED" in output, output
        for fragment in fragments:
            assert fragment in output, f"{case}: {fragment!r} missing from:\n{output[-3000:]}"
        assert _accepted_state(project) == before
    finally:
        _restore(raw)


# One case per raw file, end to end: both files bad in the same `dvc repro` (each alone is a
# case above), so one run covers both (validate reports every failed expectation).
THROUGH_DVC = ["missing column", "non-UTF-8 bytes"]


def test_bad_input_stops_dvc_repro_at_validate_and_changes_nothing(accepted) -> None:
    project, before = accepted
    raw = project / "data" / "ml-latest-small"
    try:
        for case in THROUGH_DVC:
            CASES[case][0](raw)
        result = run_dvc(project, "repro")
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert set(re.findall(r"Running stage '(\w+)'", result.stdout)) == {"ingest", "validate"}
        assert "data gate FAILED" in output
        for case in THROUGH_DVC:
            for fragment in CASES[case][1]:
                assert fragment in output, f"{case}: {fragment!r} missing from:\n{output[-3000:]}"
        assert _accepted_state(project) == before
        # The failed run's report and Data Docs are kept beside the good ones, and said where.
        failed = json.loads((project / "reports" / "validation.failed.json").read_text())
        assert failed["success"] is False and failed["failures"]
        assert (project / "reports" / "data_docs.failed" / "index.html").exists()
        assert "validation.failed.json (the last good one is unchanged)" in output
    finally:
        _restore(raw)
