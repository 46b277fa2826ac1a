import shutil

import pandas as pd
import pytest

from mtrec.config import DataConfig, VolumeTolerance
from mtrec.data.movielens import load_movielens
from mtrec.data.validation import profile, validate_tables

from ..conftest import BUNDLED, PROJECT_ROOT


@pytest.fixture
def raw_copy(tmp_path):
    shutil.copytree(BUNDLED, tmp_path / "raw")
    return tmp_path / "raw"


def _validate(raw_dir, baseline=None):
    tables = load_movielens(DataConfig(raw_dir=str(raw_dir)))
    return validate_tables(tables, PROJECT_ROOT, baseline, VolumeTolerance())


def test_bundled_data_passes_with_and_without_a_baseline(canonical, tmp_path) -> None:
    first = validate_tables(
        canonical, PROJECT_ROOT, None, VolumeTolerance(), docs_dir=tmp_path / "docs"
    )
    assert first.success, first.summary()
    assert not first.volume_checked and "volume not checked" in first.summary()
    assert (tmp_path / "docs" / "index.html").exists()
    second = validate_tables(canonical, PROJECT_ROOT, profile(canonical), VolumeTolerance())
    assert second.success and second.volume_checked
    assert second.expectations > first.expectations


def test_distribution_shift_fails_the_volume_rules(raw_copy, canonical) -> None:
    ratings = pd.read_csv(raw_copy / "ratings.csv")
    ratings["rating"] = (ratings["rating"] - 1.0).clip(lower=0.5)  # everyone got grumpier
    ratings.to_csv(raw_copy / "ratings.csv", index=False)
    report = _validate(raw_copy, baseline=profile(canonical))
    rules = {f.rule.split(" ")[0] for f in report.failures}
    assert rules == {"expect_column_mean_to_be_between"}
    assert {f.column for f in report.failures} == {"rating", "like"}


def test_out_of_range_ratings_are_named_with_file_column_and_count(raw_copy) -> None:
    ratings = pd.read_csv(raw_copy / "ratings.csv")
    ratings.loc[[5, 50, 500], "rating"] = 9.0
    ratings.to_csv(raw_copy / "ratings.csv", index=False)
    report = _validate(raw_copy)
    assert not report.success
    # Off the scale, so off the README's half-star grid too: two properties, both named.
    [failure, grid] = report.failures
    assert (failure.file, failure.column, failure.count) == ("ratings.csv", "rating", 3)
    assert "expect_column_values_to_be_between" in failure.rule
    assert (grid.rule, grid.count) == ("expect_column_values_to_be_in_set", 3)
    assert failure.examples == ["9.0", "9.0", "9.0"]
    assert "ratings.csv, column 'rating'" in report.summary()
    assert "3 of 100836 rows" in report.summary()


def test_renamed_column_is_reported_missing(raw_copy) -> None:
    ratings = pd.read_csv(raw_copy / "ratings.csv").rename(columns={"rating": "score"})
    ratings.to_csv(raw_copy / "ratings.csv", index=False)
    report = _validate(raw_copy)
    assert [(f.file, f.column, f.rule) for f in report.failures] == [
        ("ratings.csv", "rating", "expect_column_to_exist")
    ]
    assert "the column is missing" in report.summary()


def test_interactions_with_unknown_items_fail_referential_integrity(raw_copy) -> None:
    ratings = pd.read_csv(raw_copy / "ratings.csv")
    ratings.loc[ratings.groupby("userId").head(1).index[:2], "movieId"] = 99_999_999
    ratings.to_csv(raw_copy / "ratings.csv", index=False)
    failures = _validate(raw_copy).failures
    assert [(f.column, f.rule, f.count) for f in failures] == [
        ("movieId", "expect_column_values_to_be_in_set", 2)
    ]


def test_undecodable_bytes_are_named_as_an_encoding_failure(raw_copy) -> None:
    data = (raw_copy / "ratings.csv").read_bytes().splitlines(keepends=True)
    data[9] = data[9].rstrip(b"\n") + b"\xff\n"  # line 10
    (raw_copy / "ratings.csv").write_bytes(b"".join(data))
    movies = (raw_copy / "movies.csv").read_bytes()
    (raw_copy / "movies.csv").write_bytes(movies.replace(b"Toy Story", b"Toy \xe9 Story", 1))
    report = _validate(raw_copy)
    assert not report.success
    summary = report.summary()
    assert "ratings.csv: encoding: not UTF-8 (1 line, e.g. line 10)" in summary, summary
    assert "movies.csv: encoding: not UTF-8 (1 line, e.g. line 2)" in summary, summary


def test_a_repeated_header_row_is_named_with_its_line(raw_copy) -> None:
    lines = (raw_copy / "ratings.csv").read_text().splitlines(keepends=True)
    lines.insert(4, lines[0])  # line 5: a second file's header, concatenated
    (raw_copy / "ratings.csv").write_text("".join(lines))
    report = _validate(raw_copy)
    assert not report.success
    assert [f.describe() for f in report.failures] == [
        "ratings.csv: repeated header row at line 5 (1 line)"
    ]


def test_ratings_off_the_readme_grid_and_malformed_ids_fail(raw_copy) -> None:
    ratings = pd.read_csv(raw_copy / "ratings.csv")
    ratings.loc[[3, 30], "rating"] = 4.2  # on the scale, off the half-star grid
    ratings.loc[[5], "userId"] = 0  # ids are positive
    ratings.to_csv(raw_copy / "ratings.csv", index=False)
    failures = {(f.column, f.rule.split()[0]): f for f in _validate(raw_copy).failures}
    grid = failures[("rating", "expect_column_values_to_be_in_set")]
    assert grid.file == "ratings.csv" and grid.count == 2 and grid.examples[0] == "4.2"
    assert failures[("userId", "expect_column_values_to_match_regex")].count == 1


def test_a_text_in_a_number_column_is_one_failure_not_every_row(raw_copy) -> None:
    ratings = pd.read_csv(raw_copy / "ratings.csv").astype({"rating": object})
    ratings.loc[[3], "rating"] = "four"
    ratings.to_csv(raw_copy / "ratings.csv", index=False)
    failures = _validate(raw_copy).failures
    assert [(f.column, f.rule.split()[0], f.count) for f in failures] == [
        ("rating", "expect_column_values_to_match_regex", 1)
    ]
