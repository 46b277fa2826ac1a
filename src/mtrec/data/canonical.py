"""The canonical tables every dataset adapter produces, and their on-disk form."""

from __future__ import annotations

import codecs
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from mtrec.errors import ArtifactError
from mtrec.io import read_json, write_tables

_BAD_LINE = re.compile(r"Skipping line (\d+): (.+)")
MALFORMED = "malformed lines (wrong number of fields)"
_CHUNK = 1 << 24  # bytes decoded at a time when checking a file's encoding
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
    """Lines of a raw file that could not be read as data (failed by the gate), and the broken
    property in an operator's words."""

    file: str
    count: int
    examples: list[str]
    rule: str = MALFORMED


def _undecodable_lines(path: Path, encoding: str) -> ParseIssue | None:
    """Lines that are not valid ``encoding``: one streaming decode, a line scan only if it
    fails (the release's documented encoding, e.g. ml-latest-small's UTF-8)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with open(path, "rb") as raw:
            for chunk in iter(lambda: raw.read(_CHUNK), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        return None
    except UnicodeDecodeError:
        pass
    bad = []
    with open(path, "rb") as raw:
        for number, line in enumerate(raw, 1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError:
                bad.append(number)
    name = codecs.lookup(encoding).name.upper()
    return ParseIssue(path.name, len(bad), [f"line {n}" for n in bad[:5]], f"encoding: not {name}")


def _repeated_headers(frame: pd.DataFrame) -> list[int]:
    """Row positions that repeat the header (two files concatenated, header and all); only
    possible in a text column, which such a row turns the first column into."""
    if frame.empty or pd.api.types.is_numeric_dtype(frame.iloc[:, 0]):
        return []
    names = [str(c) for c in frame.columns]
    first = frame.iloc[:, 0] == names[0]
    rows = frame[first].astype(str)
    return [frame.index.get_loc(i) for i, row in rows.iterrows() if list(row) == names]


def read_csv_leniently(path: Path, issues: list[ParseIssue], **options: object) -> pd.DataFrame:
    """``pd.read_csv`` that never judges: undecodable bytes become U+FFFD (and are recorded),
    malformed lines and repeated header rows are skipped and recorded in ``issues``, an empty
    file is an empty table. The data gate then reports what was wrong, with the file named."""
    options = {"encoding_errors": "replace", "on_bad_lines": "warn"} | options
    undecodable = _undecodable_lines(path, str(options.get("encoding", "utf-8")))
    if undecodable:
        issues.append(undecodable)
    frame, bad = _read(path, options)
    if bad:
        examples = [f"line {n}: {why}" for n, why in bad[:5]]
        issues.append(ParseIssue(path.name, len(bad), examples))
    headers = _repeated_headers(frame) if options.get("header", "infer") == "infer" else []
    if headers:
        # Line numbers as the file counts them (header line 1), absent blank or skipped lines.
        lines = [i + 2 for i in headers]
        rule = f"repeated header row{'s' if len(lines) > 1 else ''} at line " + ", ".join(
            map(str, lines[:5])
        )
        issues.append(ParseIssue(path.name, len(lines), [], rule))
        # Read again without them: the columns get their own types back.
        frame, _ = _read(path, options | {"skiprows": [i + 1 for i in headers]})
    return frame


def _read(path: Path, options: dict) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The frame and the (line, why) of the malformed lines pandas skipped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(path, **options)
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame()
    return frame, [m for w in caught for m in _BAD_LINE.findall(str(w.message))]


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
