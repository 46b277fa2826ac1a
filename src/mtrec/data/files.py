"""Bring-your-own-data adapter (``data.dataset: files``): two tables already in the canonical
schema, as CSV or parquet (by file extension). docs/data.md documents the schema.

- ``data.files.interactions``: user, item, rating; optional timestamp (default: the row order),
  like (default: rating >= ``data.like_threshold``), domain, split (train / test, for
  ``protocol.name: dataset``).
- ``data.files.items``: item, title, categories (a list in parquet, ``|``-separated in CSV);
  optional text (default: the title), year, domain (for ``target.domain``).
- ``data.files.rating_scale``: the ratings' range; ``data.files.genres``: the categories items
  may carry (empty: any; the gate then only checks the tables' shape).

Every row of the interactions is a positive (``click`` = 1): the pipeline samples negatives.
Values are kept as read, so the validation stage (not a parser error here) reports bad data
with the file and column named.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mtrec.config import DataConfig
from mtrec.data.canonical import CanonicalTables, ParseIssue, TableSource, read_csv_leniently
from mtrec.errors import DataSourceError

log = logging.getLogger(__name__)

DATASET = "files"
GENRE_SEPARATOR = "|"
_READERS = (".csv", ".parquet", ".pq")


def read_table(path: Path, key: str, issues: list[ParseIssue]) -> pd.DataFrame:
    """A CSV or parquet file as read. CSV lines with too many fields are skipped and recorded
    in ``issues`` (the gate reports them); an empty CSV is an empty table."""
    if path.suffix.lower() not in _READERS:
        raise DataSourceError(
            f"{path}: data.files.{key} must end in .csv or .parquet, got {path.suffix!r}"
        )
    if not path.exists():
        raise DataSourceError(f"{path}: file not found (data.files.{key})")
    if path.suffix.lower() != ".csv":
        return pd.read_parquet(path)
    return read_csv_leniently(path, issues)


def _categories(value: object) -> list[str]:
    """A list from a parquet list / array or a ``|``-separated CSV string; none when missing."""
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in value if v is not None and str(v)]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [g for g in str(value).split(GENRE_SEPARATOR) if g]


def load_files(cfg: DataConfig) -> CanonicalTables:
    """Read ``data.files.interactions`` and ``data.files.items`` into the canonical tables."""
    inter_path, items_path = Path(cfg.files.interactions), Path(cfg.files.items)
    issues: list[ParseIssue] = []
    interactions = read_table(inter_path, "interactions", issues)
    items = read_table(items_path, "items", issues)

    interactions["click"] = 1
    if "timestamp" not in interactions:
        # Only protocol cross-domain's temporal split reads time; the other protocols need none.
        log.warning(
            "%s has no timestamp column: the file's row order stands in for time "
            "(protocol cross-domain's temporal split follows it; the others never read it)",
            inter_path,
        )
        interactions["timestamp"] = np.arange(len(interactions), dtype=np.int64)
    if "like" not in interactions and "rating" in interactions:
        # Values are kept raw for validation; the label only needs the numeric reading.
        numeric = pd.to_numeric(interactions["rating"], errors="coerce")
        interactions["like"] = (numeric >= cfg.like_threshold).astype("int8")
    if "domain" not in interactions:
        interactions["domain"] = DATASET

    # A missing required column stays missing: the gate reports it against the file.
    if "categories" in items:
        items["categories"] = items["categories"].map(_categories)
    titles = items["title"] if "title" in items else pd.Series("", index=items.index)
    if "text" in items:
        items["text"] = items["text"].fillna(titles).astype(str)
    else:
        items["text"] = titles.fillna("").astype(str)
    if "year" not in items:
        items["year"] = np.nan
    if "domain" not in items:
        items["domain"] = DATASET

    users = (
        interactions.groupby("user", as_index=False).size().rename(columns={"size": "activity"})
        if "user" in interactions
        else pd.DataFrame({"user": [], "activity": []})
    )
    sources = {
        "interactions": TableSource(str(inter_path), {}),
        # The gate's genre rule reads a per-genre view: name the column it came from.
        "items": TableSource(str(items_path), {"categories": "genre"}),
        "users": TableSource(str(inter_path), {}),
    }
    seen = {g for cats in items.get("categories", []) for g in cats}
    # Declared genres make a typo a gate failure; without them, whatever the items carry.
    known_genres = tuple(cfg.files.genres) or tuple(sorted(seen))
    log.info("files: %d interactions, %d items", len(interactions), len(items))
    return CanonicalTables(
        interactions=interactions,
        items=items,
        users=users,
        sources=sources,
        dataset=DATASET,
        rating_scale=tuple(cfg.files.rating_scale),
        known_genres=known_genres,
        parse_issues=issues,
    )
