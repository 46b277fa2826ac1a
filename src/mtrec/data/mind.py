"""MIND adapter: the official Microsoft News Dataset format (``news.tsv``, ``behaviors.tsv``).

MIND is not bundled (Microsoft Research License): download e.g. ``MINDsmall_train.zip`` from
https://msnews.github.io/ and unzip it into ``data.raw_dir`` (docs/data.md, "The other datasets").

Files (TAB-separated, no header):

- ``news.tsv``: news_id, category, subcategory, title, abstract, url, title_entities,
  abstract_entities.
- ``behaviors.tsv``: impression_id, user_id, time (``11/15/2019 8:55:22 AM``), history (the
  user's earlier clicks, space-separated news ids, oldest first), impressions (``N123-1 N456-0``:
  the news shown, ``-1`` clicked, ``-0`` not).

Mapping onto the canonical tables:

- Ids: canonical ids must be int-like, MIND's are strings (``U13740``, ``N55189``). Items get
  1..N in the sorted order of news.tsv's ids, users 1..M in sorted order of their ids; the raw
  ids stay in ``raw_item`` / ``raw_user``. A news id that behaviors.tsv names but news.tsv lacks
  gets an id past N, so the gate's referential rule reports it against behaviors.tsv.
- Interactions are the clicks, implicit positives (rating 1 on a 1..1 scale, ``like`` = click):
  every clicked impression entry, at its impression's time, and every history entry. History
  has no times; entry ``i`` of ``n`` gets the user's first impression time minus ``n - i``
  seconds, so the history keeps its order and precedes every impression (the temporal split's
  test rows are then the latest impression clicks). A (user, news) pair clicked more than once
  keeps its earliest click.
- Non-clicked impression entries (``-0``) are not kept. The canonical interactions are positives
  only: preprocessing counts every row as a user's activity, splits them by time and samples
  its own negatives per row, so unclicked rows would be miscounted as clicks; and they would
  need a rating, which implicit data has none of. The training negatives are sampled from the
  same domain's catalogue instead.
- Values stay raw for the gate: an impression label other than 0/1 is kept as the row's rating
  (out of scale, or null when not a number), an unreadable time as a null timestamp, and a
  line with the wrong number of fields is skipped and reported; the validation stage names
  the file, column, rule and count.
- Items: ``title`` is the title, ``text`` title + abstract (the text encoder's words),
  ``categories`` ``[category]`` (the category pretraining task's label and the target domain's
  genre, ``target.genres``); the finer ``subcategory`` stays as a column, not a label (MIND has
  some 280 of them: too many for genre profiles or domains).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mtrec.config import DataConfig
from mtrec.data.canonical import CanonicalTables, ParseIssue, TableSource
from mtrec.errors import DataSourceError

log = logging.getLogger(__name__)

NEWS, BEHAVIORS = "news.tsv", "behaviors.tsv"
NEWS_COLUMNS = [
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
]
BEHAVIOR_COLUMNS = ["impression_id", "user_id", "time", "history", "impressions"]
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
DATASET = "mind"
# The raw column a canonical interactions column comes from (named in gate failures).
_ITEM_SOURCE = "history/impressions"


def read_tsv(path: Path, columns: list[str], issues: list[ParseIssue]) -> pd.DataFrame:
    """All fields as strings. Lines with the wrong number of fields are skipped and recorded in
    ``issues`` (pandas would pad short lines with nulls silently); undecodable bytes become
    U+FFFD, which the gate's title rule reports."""
    if not path.exists():
        raise DataSourceError(
            f"{path}: file not found; MIND is downloaded by hand "
            "(docs/data.md, 'The other datasets')"
        )
    rows, bad = [], []
    with open(path, encoding="utf-8", errors="replace", newline="") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) == len(columns):
                rows.append(fields)
            elif line.strip():
                bad.append(f"line {number}: expected {len(columns)} fields, saw {len(fields)}")
    if bad:
        issues.append(ParseIssue(path.name, len(bad), bad[:5]))
    return pd.DataFrame(rows, columns=columns, dtype=str)


def _epoch(times: pd.Series) -> pd.Series:
    """Seconds since the epoch (MIND's times taken as UTC); null where unreadable."""
    parsed = pd.to_datetime(times, format=TIME_FORMAT, errors="coerce")
    seconds = (parsed - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    return seconds.astype("Int64")


def _history_clicks(behaviors: pd.DataFrame) -> pd.DataFrame:
    """One row per history entry: the entries of each distinct history a user shows (MIND
    repeats the same history on every line of a user), timed before their first impression."""
    first_seen = behaviors.groupby("user_id")["timestamp"].transform("min")
    lines = behaviors.assign(first=first_seen).drop_duplicates(["user_id", "history"])
    news = lines["history"].str.split()
    rows = lines[["user_id", "first"]].assign(news=news).explode("news").dropna(subset=["news"])
    position = rows.groupby(level=0).cumcount()
    length = rows.groupby(level=0)["news"].transform("size")
    return pd.DataFrame(
        {
            "raw_user": rows["user_id"].to_numpy(),
            "raw_item": rows["news"].to_numpy(),
            "timestamp": (rows["first"] - (length - position)).to_numpy(),
            "label": "1",
        }
    )


def _impression_clicks(behaviors: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The clicked impression entries at their impression's time, plus any entry whose label
    is not 0 or 1 (kept so the gate reports it). Also returns how many non-clicks were left."""
    shown = behaviors["impressions"].str.split()
    # Non-clicks are most entries (~96% in MIND): drop them before exploding, not after.
    kept = shown.map(lambda entries: [e for e in entries if not e.endswith("-0")])
    non_clicks = int(shown.str.len().sum() - kept.str.len().sum())
    entries = (
        behaviors[["user_id", "timestamp"]]
        .assign(entry=kept)
        .explode("entry")
        .dropna(subset=["entry"])
    )
    parts = entries["entry"].str.rpartition("-")
    # "N1" (no dash) rpartitions to ("", "", "N1"): the id is the whole entry, the label empty.
    has_dash = parts[1] == "-"
    frame = pd.DataFrame(
        {
            "raw_user": entries["user_id"].to_numpy(),
            "raw_item": parts[0].where(has_dash, parts[2]).to_numpy(),
            "timestamp": entries["timestamp"].to_numpy(),
            "label": parts[2].where(has_dash, "").to_numpy(),
        }
    )
    return frame, non_clicks


def _ids(values: pd.Series, known: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """1-based ints: ``known`` (sorted) first, then any other value in sorted order."""
    # pd.Index hashes; np.setdiff1d on string (object) arrays is quadratic.
    extra = pd.Index(values.unique()).difference(pd.Index(known)).sort_values().to_numpy()
    order = np.concatenate([known, extra])
    lookup = pd.Series(np.arange(1, len(order) + 1, dtype=np.int64), index=order)
    return values.map(lookup).astype("int64"), extra


def load_mind(cfg: DataConfig) -> CanonicalTables:
    """Read a MIND release folder (``data.raw_dir``) into the canonical tables."""
    raw_dir = Path(cfg.raw_dir)
    news_path, behaviors_path = raw_dir / NEWS, raw_dir / BEHAVIORS
    issues: list[ParseIssue] = []
    news = read_tsv(news_path, NEWS_COLUMNS, issues)
    behaviors = read_tsv(behaviors_path, BEHAVIOR_COLUMNS, issues)
    behaviors["timestamp"] = _epoch(behaviors["time"])

    impressions, non_clicks = _impression_clicks(behaviors)
    clicks = pd.concat([_history_clicks(behaviors), impressions], ignore_index=True)
    clicks["timestamp"] = clicks["timestamp"].astype("Int64")
    # MIND repeats histories and users re-click: keep each (user, news) pair's earliest click.
    clicks = clicks.sort_values("timestamp", kind="stable", na_position="last")
    clicks = clicks.drop_duplicates(["raw_user", "raw_item"]).reset_index(drop=True)

    catalogue = np.unique(news["news_id"].to_numpy())
    items = news.rename(columns={"news_id": "raw_item"})
    items["item"], _ = _ids(items["raw_item"], catalogue)
    items["categories"] = [[c] if c else [] for c in items["category"]]
    items["text"] = (items["title"] + " " + items["abstract"]).str.strip()
    items = items.assign(year=np.nan, domain=DATASET)[
        ["item", "raw_item", "title", "text", "categories", "subcategory", "year", "domain"]
    ]

    item_ids, unknown = _ids(clicks["raw_item"], catalogue)
    if len(unknown):
        log.warning(
            "%s: %d news ids not in %s, e.g. %s", BEHAVIORS, len(unknown), NEWS, unknown[:5]
        )
    user_ids, _ = _ids(clicks["raw_user"], np.array([], dtype=object))
    interactions = pd.DataFrame(
        {
            "user": user_ids,
            "item": item_ids,
            "domain": DATASET,
            "timestamp": clicks["timestamp"],
            # The impression label, numeric: 1 for a click; anything else fails the gate.
            "rating": pd.to_numeric(clicks["label"], errors="coerce"),
            "click": 1,
            "like": 1,
            "raw_user": clicks["raw_user"],
            "raw_item": clicks["raw_item"],
        }
    )
    users = (
        interactions.groupby(["user", "raw_user"], as_index=False)
        .size()
        .rename(columns={"size": "activity"})
    )
    sources = {
        "interactions": TableSource(
            str(behaviors_path),
            {"user_id": "user", _ITEM_SOURCE: "item", "time": "timestamp", "impressions": "rating"},
            extra=[str(news_path)],
        ),
        "items": TableSource(
            str(news_path), {"news_id": "item", "title": "title", "category": "categories"}
        ),
        "users": TableSource(str(behaviors_path), {"user_id": "user"}),
    }
    log.info(
        "mind: %d clicks of %d users on %d news (%d impression non-clicks not kept)",
        len(interactions),
        len(users),
        len(items),
        non_clicks,
    )
    return CanonicalTables(
        interactions=interactions,
        items=items,
        users=users,
        sources=sources,
        dataset=DATASET,
        rating_scale=(1.0, 1.0),
        known_genres=tuple(sorted({c for cats in items["categories"] for c in cats})),
        parse_issues=issues,
    )
