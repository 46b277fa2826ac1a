"""The canonical tables every dataset adapter produces, and their on-disk form."""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from mtrec.errors import ArtifactError
from mtrec.io import read_json, write_tables

_BAD_LINE = re.compile(r"Skipping line (\d+): (.+)")
TABLES = ("interactions", "items", "users")
# Optional: fixed evaluation candidates (user, item = the held-out positive, domain, negatives).
CANDIDATES = "candidates"


@dataclass(frozen=True)
class TableSource:
    """The raw file a canonical table came from and its column renames (source -> canonical)."""

    file: str
    columns: dict[str, str]
    extra: list[str] = field(default_factory=list)

    def source_column(self, canonical: str) -> str:
        """The column name as it appears in the raw file."""
        for raw, name in self.columns.items():
            if name == canonical:
                return raw
        return canonical


@dataclass(frozen=True)
class ParseIssue:
    """Lines of a raw file that could not be parsed (skipped on read, failed by the gate)."""

    file: str
    count: int
    examples: list[str]


def read_csv_leniently(path: Path, issues: list[ParseIssue], **options: object) -> pd.DataFrame:
    """``pd.read_csv`` that never judges: undecodable bytes become U+FFFD, malformed lines are
    skipped and recorded in ``issues``, an empty file is an empty table. The data gate then
    reports what was wrong, with the file named."""
    options = {"encoding_errors": "replace", "on_bad_lines": "warn"} | options
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(path, **options)
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame()
    bad = [m for w in caught for m in _BAD_LINE.findall(str(w.message))]
    if bad:
        issues.append(ParseIssue(path.name, len(bad), [f"line {n}: {why}" for n, why in bad[:5]]))
    return frame


@dataclass
class CanonicalTables:
    """interactions (user, item, domain, timestamp, rating, click, like), items, users."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    sources: dict[str, TableSource]
    dataset: str
    rating_scale: tuple[float, float]
    known_genres: tuple[str, ...] = ()
    parse_issues: list[ParseIssue] = field(default_factory=list)
    candidates: pd.DataFrame | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        """The tables by name."""
        return {name: getattr(self, name) for name in TABLES}

    def save(self, out_dir: str | Path) -> None:
        """Write the tables and meta.json as one atomically replaced directory."""
        meta = {
            "dataset": self.dataset,
            "rating_scale": list(self.rating_scale),
            "known_genres": list(self.known_genres),
            "parse_issues": [asdict(issue) for issue in self.parse_issues],
            "rows": {name: len(frame) for name, frame in self.frames().items()},
            "sources": {name: asdict(src) for name, src in self.sources.items()},
        }
        extra = {} if self.candidates is None else {CANDIDATES: self.candidates}
        write_tables(out_dir, self.frames() | extra, meta)

    @classmethod
    def load(cls, in_dir: str | Path) -> CanonicalTables:
        """Read tables written by :meth:`save`."""
        in_dir = Path(in_dir)
        try:
            meta = read_json(in_dir / "meta.json")
            frames = {name: pd.read_parquet(in_dir / f"{name}.parquet") for name in TABLES}
        except FileNotFoundError as exc:
            raise ArtifactError(f"{exc.filename}: missing; run the ingest stage first") from exc
        candidates = in_dir / f"{CANDIDATES}.parquet"
        return cls(
            **frames,
            sources={k: TableSource(**v) for k, v in meta["sources"].items()},
            dataset=meta["dataset"],
            rating_scale=tuple(meta["rating_scale"]),
            known_genres=tuple(meta["known_genres"]),
            parse_issues=[ParseIssue(**issue) for issue in meta["parse_issues"]],
            candidates=pd.read_parquet(candidates) if candidates.exists() else None,
        )
