"""Feedback files: the same data gate as the pipeline, appended once, filed away, on real data."""

import json
import os
import threading
import time

import pandas as pd
import pytest

import mtrec.feedback
from mtrec.config import load_params
from mtrec.errors import ConfigError
from mtrec.feedback import ingest_feedback, mark_announced

HEADER = "userId,movieId,rating,timestamp\n"


def _drop(project, name: str, rows: list[tuple]) -> None:
    incoming = project / "data" / "feedback" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    (incoming / name).write_text(HEADER + "".join(",".join(map(str, r)) + "\n" for r in rows))


def _store(project) -> pd.DataFrame:
    return pd.read_csv(project / "data" / "ml-latest-small" / "ratings.csv")


def test_good_files_are_appended_once_and_bad_ones_rejected_with_the_rule(project) -> None:
    now = int(time.time()) - 60
    before = _store(project)
    store = project / "data" / "ml-latest-small" / "ratings.csv"
    os.link(store, project / "workspace_link.csv")  # as a run workspace links the raw data
    good = [(1, 2, 4.5, now), (1, 5, 3.0, now), (9999, 1, 5.0, now)]  # new pairs, a new user
    _drop(project, "a-good.csv", good)
    _drop(project, "b-bad-rating.csv", [(6, 1, 11.0, now)])
    # User 414 rated movie 1 before: a re-rating, appended (preprocess.duplicates decides).
    _drop(project, "b-re-rating.csv", [(414, 1, 1.0, now)])
    _drop(project, "c-bad-header.csv", [])
    (project / "data" / "feedback" / "incoming" / "c-bad-header.csv").write_text("u,i\n1,2\n")
    params = load_params(project / "params.yaml")

    batch = ingest_feedback(params, project)

    assert batch.accepted == ["a-good.csv", "b-re-rating.csv"] and batch.rows == 4
    assert set(batch.rejected) == {"b-bad-rating.csv", "c-bad-header.csv"}
    assert (
        "column 'rating': expect_column_values_to_be_between" in batch.rejected["b-bad-rating.csv"]
    )
    # A row-level rule: judged on the file's own rows, not on the store.
    assert "on its own rows" in batch.rejected["b-bad-rating.csv"]
    assert "1 of 1 rows" in batch.rejected["b-bad-rating.csv"]
    assert "header 'u,i'" in batch.rejected["c-bad-header.csv"]
    assert all("was not appended (nothing from it" in why for why in batch.rejected.values())
    after = _store(project)
    assert len(after) == len(before) + 4
    assert after.tail(4)["userId"].tolist() == [1, 1, 9999, 414]
    # Atomic replace: what a workspace hard-linked before is the data it started with.
    assert len(pd.read_csv(project / "workspace_link.csv")) == len(before)

    root = project / "data" / "feedback"
    assert not list((root / "incoming").iterdir())
    assert (root / "accepted" / "a-good.csv").exists()
    reason = (root / "rejected" / "b-bad-rating.csv.reason.txt").read_text()
    assert "ratings.csv, column 'rating'" in reason
    ledger = [json.loads(x) for x in (root / "accepted" / "ledger.jsonl").read_text().splitlines()]
    assert [(e["file"], e["rows"]) for e in ledger] == [("a-good.csv", 3), ("b-re-rating.csv", 1)]

    # Nothing new: nothing happens. The same file dropped again is filed, not appended.
    assert ingest_feedback(params, project).accepted == []
    _drop(project, "a-good.csv", good)
    again = ingest_feedback(params, project)
    assert again.accepted == [] and again.duplicates == ["a-good.csv"]
    assert len(_store(project)) == len(before) + 4


def test_a_pass_that_stopped_after_appending_does_not_append_twice(project) -> None:
    now = int(time.time()) - 60
    _drop(project, "late.csv", [(1, 2, 4.0, now), (6, 1, 2.0, now)])
    store = project / "data" / "ml-latest-small" / "ratings.csv"
    # The state a killed task leaves: rows appended, ledger not yet written, file not moved.
    store.write_text(store.read_text() + f"1,2,4.0,{now}\n6,1,2.0,{now}\n")
    rows = len(_store(project))

    batch = ingest_feedback(load_params(project / "params.yaml"), project)

    assert batch.accepted == ["late.csv"]
    assert len(_store(project)) == rows


def test_future_timestamps_fail_the_gate(project) -> None:
    _drop(project, "future.csv", [(1, 2, 4.0, int(time.time()) + 86_400 * 30)])
    batch = ingest_feedback(load_params(project / "params.yaml"), project)
    assert list(batch.rejected) == ["future.csv"]
    assert "column 'timestamp'" in batch.rejected["future.csv"]


def test_downloaded_datasets_take_no_feedback(project) -> None:
    params = load_params(project / "params.yaml", {"data": {"dataset": "ml-1m"}})
    _drop(project, "new.csv", [(1, 2, 4.0, int(time.time()) - 60)])
    with pytest.raises(ConfigError, match=r"local data\.raw_dir"):
        ingest_feedback(params, project)


def _incoming(project):
    incoming = project / "data" / "feedback" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    return incoming


def test_links_fifos_and_oversized_files_are_rejected_unread(project) -> None:
    store = project / "data" / "ml-latest-small" / "ratings.csv"
    before = store.read_bytes()
    secret = project / "secret.txt"
    secret.write_text("userId,movieId,rating,timestamp\nAPI_KEY=hunter2\n")
    incoming = _incoming(project)
    (incoming / "a-link.csv").symlink_to(secret)
    (incoming / "b-zero.csv").symlink_to("/dev/zero")
    os.mkfifo(incoming / "c-fifo.csv")  # no writer: a plain open would block forever
    _drop(project, "d-big.csv", [(1, 2, 4.0, int(time.time()) - 60)] * 100)
    params = load_params(project / "params.yaml", {"feedback": {"max_bytes": 1000}})

    result: dict = {}
    worker = threading.Thread(
        target=lambda: result.update(batch=ingest_feedback(params, project)), daemon=True
    )
    worker.start()
    worker.join(timeout=300)
    assert not worker.is_alive(), "ingest_feedback blocked on the FIFO"
    batch = result["batch"]

    assert batch.accepted == []
    assert set(batch.rejected) == {"a-link.csv", "b-zero.csv", "c-fifo.csv", "d-big.csv"}
    assert "a symlink" in batch.rejected["a-link.csv"]
    assert "not a regular file" in batch.rejected["c-fifo.csv"]
    assert "over feedback.max_bytes = 1,000" in batch.rejected["d-big.csv"]
    rejected = project / "data" / "feedback" / "rejected"
    reasons = "".join(p.read_text() for p in rejected.glob("*.reason.txt"))
    assert "hunter2" not in reasons and "hunter2" not in str(batch.rejected)
    assert store.read_bytes() == before
    assert secret.read_text().endswith("hunter2\n")  # the link was moved, not its target
    assert (rejected / "a-link.csv").is_symlink()


def test_a_rejection_quotes_a_short_escaped_excerpt(project) -> None:
    incoming = _incoming(project)
    (incoming / "odd.csv").write_bytes(b"\x1b[2J" + b"x" * 500 + b"\xff\n1,2,4.0,1\n")
    batch = ingest_feedback(load_params(project / "params.yaml"), project)
    reason = batch.rejected["odd.csv"]
    assert "\x1b" not in reason and "\\x1b[2J" in reason
    assert "x" * 61 not in reason and "..." in reason


def test_datasets_that_cannot_take_feedback_say_so(project) -> None:
    params = load_params(project / "params.yaml", {"data": {"dataset": "mind"}})
    assert ingest_feedback(params, project).accepted == []  # nothing incoming: nothing to say
    _drop(project, "new.csv", [(1, 2, 4.0, int(time.time()) - 60)])
    with pytest.raises(ConfigError, match=r"data\.dataset mind cannot take feedback"):
        ingest_feedback(params, project)
    assert (project / "data" / "feedback" / "incoming" / "new.csv").exists()


def test_appended_files_stay_pending_until_announced(project) -> None:
    params = load_params(project / "params.yaml")
    _drop(project, "a.csv", [(1, 2, 4.0, int(time.time()) - 60)])
    first = ingest_feedback(params, project)
    assert [e["file"] for e in first.pending] == ["a.csv"]
    # The run failed before its asset event: the next pass still has a.csv to announce.
    again = ingest_feedback(params, project)
    assert again.accepted == [] and [e["file"] for e in again.pending] == ["a.csv"]
    mark_announced(params, project, again.ledger_entries)
    assert ingest_feedback(params, project).pending == []


def _spy(monkeypatch) -> tuple[list[int], list]:
    """Record the interactions each real gate run judged and each real atomic write's target."""
    gated: list[int] = []
    written: list = []
    validate, write = mtrec.feedback.validate_tables, mtrec.feedback.write_atomic

    def validate_spy(tables, *args, **kwargs):
        gated.append(len(tables.interactions))
        return validate(tables, *args, **kwargs)

    def write_spy(target, *args, **kwargs):
        written.append(target)
        return write(target, *args, **kwargs)

    monkeypatch.setattr(mtrec.feedback, "validate_tables", validate_spy)
    monkeypatch.setattr(mtrec.feedback, "write_atomic", write_spy)
    return gated, written


def test_a_pass_gates_the_whole_store_once_and_replaces_it_once(project, monkeypatch) -> None:
    now = int(time.time()) - 60
    store = project / "data" / "ml-latest-small" / "ratings.csv"
    before = store.read_bytes()
    inode = store.stat().st_ino
    _drop(project, "a.csv", [(1, 2, 4.5, now)])
    _drop(project, "b.csv", [(1, 5, 3.0, now), (9999, 1, 5.0, now)])
    _drop(project, "c.csv", [(6, 1, 2.0, now)])
    gated, written = _spy(monkeypatch)

    batch = ingest_feedback(load_params(project / "params.yaml"), project)

    assert batch.accepted == ["a.csv", "b.csv", "c.csv"] and batch.rows == 4
    stored = len(_store(project))
    assert stored == before.count(b"\n") - 1 + 4
    # Each file alone (1, 2 and 1 rows), then the whole store once, with all of them.
    assert gated == [1, 2, 1, stored]
    assert written == [store] and store.stat().st_ino != inode
    assert store.read_bytes().startswith(before)  # earlier rows kept as they were


def test_a_bad_file_among_good_ones_is_rejected_alone(project, monkeypatch) -> None:
    now = int(time.time()) - 60
    store = project / "data" / "ml-latest-small" / "ratings.csv"
    before = store.read_bytes()
    _drop(project, "a.csv", [(1, 2, 4.5, now)])
    _drop(project, "b-bad-rating.csv", [(6, 1, 11.0, now)])  # fails on its own rows
    _drop(project, "c.csv", [(1, 5, 3.0, now)])
    # Fine on its own rows, but the bundled data holds this rating event: the whole store fails.
    _drop(project, "d-in-store.csv", [(1, 1, 4.0, 964982703)])
    _drop(project, "e.csv", [(6, 2, 2.0, now)])
    gated, written = _spy(monkeypatch)

    batch = ingest_feedback(load_params(project / "params.yaml"), project)

    assert batch.accepted == ["a.csv", "c.csv", "e.csv"] and batch.rows == 3
    assert set(batch.rejected) == {"b-bad-rating.csv", "d-in-store.csv"}
    assert "on its own rows" in batch.rejected["b-bad-rating.csv"]
    culprit = batch.rejected["d-in-store.csv"]
    assert "ratings.csv with its rows appended" in culprit
    assert "expect_compound_columns_to_be_unique" in culprit
    assert all("was not appended (nothing from it" in why for why in batch.rejected.values())
    rejected = project / "data" / "feedback" / "rejected"
    assert culprit in (rejected / "d-in-store.csv.reason.txt").read_text()
    assert written == [store]  # one replace, with the good files only
    assert store.read_bytes() == before + f"1,2,4.5,{now}\n1,5,3.0,{now}\n6,2,2.0,{now}\n".encode()
    # Each file alone; then the whole store with the four that passed (fails), with the first
    # half a+c (passes), then with d (fails: the culprit), then with e.
    n = before.count(b"\n") - 1
    assert gated == [1] * 5 + [n + 4, n + 2, n + 3, n + 3]
    ledger = (project / "data" / "feedback" / "accepted" / "ledger.jsonl").read_text()
    assert [json.loads(x)["file"] for x in ledger.splitlines()] == ["a.csv", "c.csv", "e.csv"]


def test_a_pass_killed_after_replacing_the_store_does_not_append_twice(project) -> None:
    now = int(time.time()) - 60
    _drop(project, "a.csv", [(1, 2, 4.0, now)])
    _drop(project, "c.csv", [(6, 1, 2.0, now)])
    store = project / "data" / "ml-latest-small" / "ratings.csv"
    # A pass replaced the store with a.csv and c.csv, then was killed before its ledger
    # entries; b.csv came in since, its name between theirs.
    store.write_text(store.read_text() + f"1,2,4.0,{now}\n6,1,2.0,{now}\n")
    _drop(project, "b.csv", [(1, 5, 3.0, now)])
    rows = len(_store(project))

    batch = ingest_feedback(load_params(project / "params.yaml"), project)

    assert batch.accepted == ["a.csv", "b.csv", "c.csv"] and batch.rows == 3
    assert len(_store(project)) == rows + 1
    assert _store(project).tail(1)["movieId"].tolist() == [5]
