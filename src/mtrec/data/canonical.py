"""The canonical tables every dataset adapter produces, and their on-disk form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from mtrec.errors import ArtifactError
from mtrec.io import read_json, write_tables

TABLES = ("interactions", "items", "users")


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
        write_tables(out_dir, self.frames(), meta)

    @classmethod
    def load(cls, in_dir: str | Path) -> CanonicalTables:
        """Read tables written by :meth:`save`."""
        in_dir = Path(in_dir)
        try:
            meta = read_json(in_dir / "meta.json")
            frames = {name: pd.read_parquet(in_dir / f"{name}.parquet") for name in TABLES}
        except FileNotFoundError as exc:
            raise ArtifactError(f"{exc.filename}: missing; run the ingest stage first") from exc
        return cls(
            **frames,
            sources={k: TableSource(**v) for k, v in meta["sources"].items()},
            dataset=meta["dataset"],
            rating_scale=tuple(meta["rating_scale"]),
            known_genres=tuple(meta["known_genres"]),
            parse_issues=[ParseIssue(**issue) for issue in meta["parse_issues"]],
        )
