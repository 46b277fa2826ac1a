"""The MIND adapter on a small fixture written in the exact MIND format (news.tsv,
behaviors.tsv), then the data gate and preprocessing with the ``mind`` preset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtrec.config import PARAMS_FILE, VolumeTolerance, load_params, read_preset
from mtrec.data.adapters import load_dataset
from mtrec.data.canonical import CanonicalTables
from mtrec.data.mind import TIME_FORMAT, load_mind
from mtrec.data.preprocess import preprocess
from mtrec.data.validation import validate_tables
from mtrec.errors import DataSourceError

from ..conftest import PROJECT_ROOT

CATEGORIES = {"news": 10, "sports": 8, "finance": 6, "lifestyle": 6}
N_USERS = 8
START = datetime(2019, 11, 11, 9, 0, 0, tzinfo=UTC)


def _news_lines() -> list[str]:
    lines, n = [], 0
    for category, count in CATEGORIES.items():
        for k in range(count):
            n += 1
            lines.append(
                "\t".join(
                    [
                        f"N{n}",
                        category,
                        f"{category}sub{k % 2}",
                        f'{category} story {k} "quoted" headline',
                        f"Abstract of the {category} story number {k}.",
                        f"https://assets.msn.com/labs/mind/N{n}.html",
                        "[]",
                        "[]",
                    ]
                )
            )
    return lines


def _behaviors() -> tuple[list[str], set[tuple[str, str]], dict[tuple[str, str], int]]:
    """~20 impressions of 8 users; returns the lines, the (user, news) clicks in history and
    the impression clicks with their epoch time (the earliest when clicked twice)."""
    rng = np.random.default_rng(7)
    lines, history_clicks, impression_clicks = [], set(), {}
    n_news = sum(CATEGORIES.values())
    impression = 0
    for u in range(1, N_USERS + 1):
        user = f"U{u}"
        history = [f"N{i}" for i in rng.choice(np.arange(1, n_news + 1), 5, replace=False)]
        history_clicks |= {(user, n) for n in history}
        for j in range(2 if u % 2 else 3):
            impression += 1
            when = START + timedelta(hours=impression, minutes=u)
            shown = rng.choice(np.arange(1, n_news + 1), 5, replace=False)
            labels = [1, 0, 0, 1, 0] if j == 0 else [0, 1, 0, 0, 0]
            entries = [f"N{i}-{lab}" for i, lab in zip(shown, labels, strict=True)]
            for i, lab in zip(shown, labels, strict=True):
                if lab:
                    impression_clicks.setdefault((user, f"N{i}"), int(when.timestamp()))
            # MIND's own layout: hour without a leading zero, AM/PM.
            time = when.strftime(TIME_FORMAT).replace(" 0", " ")
            lines.append(
                "\t".join([str(impression), user, time, " ".join(history), " ".join(entries)])
            )
    return lines, history_clicks, impression_clicks


def write_mind(
    root: Path, news: list[str] | None = None, behaviors: list[str] | None = None
) -> Path:
    """A MIND release folder (both files) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "news.tsv").write_text("\n".join(news or _news_lines()) + "\n", encoding="utf-8")
    (root / "behaviors.tsv").write_text("\n".join(behaviors or _behaviors()[0]) + "\n")
    return root


@pytest.fixture(scope="module")
def params():
    return load_params(PROJECT_ROOT / PARAMS_FILE, read_preset(PROJECT_ROOT, "mind"))


def _load(params, raw_dir: Path) -> CanonicalTables:
    return load_mind(params.data.model_copy(update={"raw_dir": str(raw_dir)}))


@pytest.fixture(scope="module")
def tables(params, tmp_path_factory) -> CanonicalTables:
    return _load(params, write_mind(tmp_path_factory.mktemp("mind") / "MINDsmall_train"))


def _gate(tables: CanonicalTables):
    return validate_tables(tables, PROJECT_ROOT, None, VolumeTolerance())


def test_clicks_from_history_and_impressions(tables) -> None:
    _, history, impressions = _behaviors()
    inter = tables.interactions
    pairs = set(zip(inter["raw_user"], inter["raw_item"], strict=True))
    assert pairs == history | set(impressions)  # clicked entries only: no -0 entry is kept
    assert len(inter) == len(pairs)  # (user, news) unique: repeated histories merged
    assert (
        (inter["rating"] == 1).all() and (inter["click"] == 1).all() and (inter["like"] == 1).all()
    )
    by_pair = inter.set_index(["raw_user", "raw_item"])["timestamp"]
    for pair, when in impressions.items():
        if pair not in history:  # a re-click of a history item keeps the earlier time
            assert by_pair[pair] == when
    assert tables.users["user"].nunique() == N_USERS
    assert tables.rating_scale == (1.0, 1.0)


def test_history_precedes_the_first_impression_in_order(tables) -> None:
    behaviors = pd.read_csv(
        tables.sources["interactions"].file, sep="\t", header=None, names=range(5)
    )
    inter = tables.interactions.set_index(["raw_user", "raw_item"])["timestamp"]
    for user, lines in behaviors.groupby(1):
        first = lines.iloc[0]
        history = first[3].split()
        times = [inter[(user, n)] for n in history]
        first_time = int(pd.to_datetime(lines[2], format="%m/%d/%Y %I:%M:%S %p").min().timestamp())
        assert times == sorted(times) and len(set(times)) == len(times)
        assert times[-1] == first_time - 1 and times[0] == first_time - len(history)


def test_ids_are_ints_in_sorted_raw_order_and_categories_are_labels(tables) -> None:
    items = tables.items
    assert len(items) == sum(CATEGORIES.values())
    assert items.sort_values("raw_item")["item"].tolist() == list(range(1, len(items) + 1))
    assert tables.known_genres == tuple(sorted(CATEGORIES))
    assert items.groupby(items["categories"].str[0]).size().to_dict() == CATEGORIES
    first = items.set_index("raw_item").loc["N1"]
    assert first["title"] == 'news story 0 "quoted" headline'
    assert first["text"].startswith(first["title"]) and "Abstract" in first["text"]
    assert set(tables.interactions["item"]) <= set(items["item"])


def test_fixture_passes_the_gate_and_preprocesses_with_the_preset(tables, params, tmp_path) -> None:
    tables.save(tmp_path / "interim")  # what the ingest stage writes, read back as stages do
    tables = CanonicalTables.load(tmp_path / "interim")
    report = _gate(tables)
    assert report.success, report.summary()
    out = preprocess(tables, params.target, params.preprocess, params.protocol)
    domain = out.items.set_index("item")["domain"]
    sports = tables.items.loc[tables.items["categories"].str[0] == "sports", "item"]
    assert (domain.reindex(sports).dropna() == "target").all()
    assert set(out.meta["genres"]) == set(CATEGORIES)
    assert out.meta["positives"]["target/test"] > 0 and out.meta["cleaning"]["inactive_users"] == 0
    pos = out.interactions[out.interactions["click"] == 1]
    # temporal split: every test click is at least as late as the same user's train clicks
    for _, rows in pos.groupby(["user_idx", "domain"]):
        train, test = rows[rows["split"] == "train"], rows[rows["split"] == "test"]
        if len(train) and len(test):
            assert test["timestamp"].min() >= train["timestamp"].max()


def test_bad_impression_labels_fail_the_gate_naming_file_and_column(params, tmp_path) -> None:
    lines = _behaviors()[0]
    lines[0] = lines[0].replace("-1 ", "-2 ", 1)  # a label that is neither 0 nor 1
    fields = lines[1].split("\t")
    lines[1] = "\t".join([*fields[:4], fields[4].replace("-0", "", 1)])  # no label at all
    report = _gate(_load(params, write_mind(tmp_path / "raw", behaviors=lines)))
    found = {(f.file, f.column, f.rule.split(" ")[0], f.count) for f in report.failures}
    assert found == {
        ("behaviors.tsv", "impressions", "expect_column_values_to_be_between", 1),
        ("behaviors.tsv", "impressions", "expect_column_values_to_not_be_null", 1),
    }
    assert "behaviors.tsv, column 'impressions'" in report.summary()


def test_malformed_lines_and_unknown_news_fail_the_gate(params, tmp_path) -> None:
    lines = _behaviors()[0]
    lines[2] = "\t".join(lines[2].split("\t")[:4])  # the impressions field is missing
    fields = lines[4].split("\t")
    lines[4] = "\t".join([*fields[:4], "N999-1 " + fields[4]])  # a news id not in news.tsv
    lines[5] = "\t".join([*lines[5].split("\t")[:2], "yesterday", *lines[5].split("\t")[3:]])
    tables = _load(params, write_mind(tmp_path / "raw", behaviors=lines))
    report = _gate(tables)
    by_rule = {(f.file, f.column, f.rule.split(" ")[0]): f for f in report.failures}
    read = by_rule[("behaviors.tsv", "", "malformed")]
    assert read.count == 1 and read.examples == ["line 3: expected 5 fields, saw 4"]
    unknown = by_rule[("behaviors.tsv", "history/impressions", "expect_column_values_to_be_in_set")]
    assert unknown.count == 1
    assert ("behaviors.tsv", "time", "expect_column_values_to_not_be_null") in by_rule
    assert "behaviors.tsv, column 'time'" in report.summary()


def test_ingest_picks_the_adapter_by_dataset(params, tmp_path) -> None:
    raw = write_mind(tmp_path / "raw")
    tables = load_dataset(params.data.model_copy(update={"raw_dir": str(raw)}))
    assert tables.dataset == "mind" and len(tables.items) == sum(CATEGORIES.values())


def test_missing_files_name_the_download(params, tmp_path) -> None:
    with pytest.raises(DataSourceError, match=r"news\.tsv: file not found; MIND is downloaded"):
        _load(params, tmp_path)
