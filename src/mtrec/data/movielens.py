"""MovieLens adapter: bundled ml-latest-small, or ML-1M / ML-25M fetched from GroupLens.

It maps the source files onto the canonical tables without judging them: values are kept
as read, so the validation stage (not a parser error here) is what reports bad data, with
the source file and column named.
"""

from __future__ import annotations

import logging
import re
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from mtrec.config import DataConfig
from mtrec.data.canonical import CanonicalTables, ParseIssue, TableSource, read_csv_leniently
from mtrec.data.taxonomy import MOVIELENS_1M_GENRES, MOVIELENS_GENRES
from mtrec.errors import ChecksumMismatch, DataSourceError
from mtrec.io import sha256_file

log = logging.getLogger(__name__)

_GROUPLENS = "https://files.grouplens.org/datasets/movielens"
NO_GENRES = "(no genres listed)"
_YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class MovieLensRelease:
    """Where a release lives and how its files are laid out."""

    url: str | None
    sha256: str | None
    ratings: str
    movies: str
    tags: str | None
    separator: str
    encoding: str
    genres: tuple[str, ...]
    rating_scale: tuple[float, float]
    rating_step: float  # the README's grid: half stars (ml-latest-small, ml-25m), whole (ml-1m)

    def rating_grid(self) -> list[float]:
        """Every rating value the release's README allows."""
        low, high = self.rating_scale
        return [
            low + i * self.rating_step for i in range(round((high - low) / self.rating_step) + 1)
        ]


# sha256 of the official ML-1M zip (the same digest is pinned by several independent
# projects). GroupLens publishes only md5 files, so ML-25M needs data.sha256 from the user.
RELEASES: dict[str, MovieLensRelease] = {
    "ml-latest-small": MovieLensRelease(
        url=None,
        sha256=None,
        ratings="ratings.csv",
        movies="movies.csv",
        tags="tags.csv",
        separator=",",
        encoding="utf-8",
        genres=MOVIELENS_GENRES,
        rating_scale=(0.5, 5.0),
        rating_step=0.5,
    ),
    "ml-1m": MovieLensRelease(
        url=f"{_GROUPLENS}/ml-1m.zip",
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        ratings="ratings.dat",
        movies="movies.dat",
        tags=None,
        separator="::",
        encoding="latin-1",
        genres=MOVIELENS_1M_GENRES,
        rating_scale=(1.0, 5.0),
        rating_step=1.0,
    ),
}
# ML-25M has the same files and layout as the bundled release.
RELEASES["ml-25m"] = replace(RELEASES["ml-latest-small"], url=f"{_GROUPLENS}/ml-25m.zip")
_DAT_COLUMNS = {
    "ratings.dat": ["userId", "movieId", "rating", "timestamp"],
    "movies.dat": ["movieId", "title", "genres"],
}


def fetch_archive(url: str, sha256: str, dest_dir: Path) -> Path:
    """Download ``url`` (http(s) or file://) into ``dest_dir``, verify it, extract it.

    Returns the extraction directory. A checksum mismatch deletes the download.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    archive = dest_dir / Path(url.split("?")[0]).name
    if not archive.exists():
        log.info("downloading %s -> %s", url, archive)
        partial = archive.with_suffix(archive.suffix + ".part")
        try:
            with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise DataSourceError(f"could not download {url}: {exc}") from exc
        partial.rename(archive)
    actual = sha256_file(archive)
    if actual != sha256.lower():
        archive.unlink()
        raise ChecksumMismatch(
            f"{archive.name}: sha256 {actual} does not match the expected {sha256}; "
            "the download was deleted, check data.url / data.sha256"
        )
    extract_dir = dest_dir / archive.stem
    if not extract_dir.exists():
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest_dir)
    return extract_dir


def resolve_raw_dir(cfg: DataConfig) -> Path:
    """The folder holding the release's files, downloading it first when needed."""
    release = RELEASES[cfg.dataset]
    url = cfg.url or release.url
    if url is None:
        return Path(cfg.raw_dir)
    sha256 = cfg.sha256 or release.sha256
    if sha256 is None:
        raise DataSourceError(
            f"no pinned sha256 for {cfg.dataset}: set data.sha256 to the digest of "
            f"{Path(url).name} you verified against GroupLens' published checksum"
        )
    return fetch_archive(url, sha256, Path(cfg.download_dir))


def _read(path: Path, release: MovieLensRelease, issues: list[ParseIssue]) -> pd.DataFrame:
    """Read leniently: undecodable bytes become U+FFFD, malformed lines are skipped and
    recorded in ``issues``, an empty file is an empty table; validation judges the result."""
    if not path.exists():
        raise DataSourceError(f"{path}: file not found")
    options: dict = {"encoding": release.encoding}
    if release.separator != ",":
        options |= {
            "sep": release.separator,
            "engine": "python",
            "header": None,
            "names": _DAT_COLUMNS[path.name],
        }
    return read_csv_leniently(path, issues, **options)


def _genres(raw: pd.Series) -> pd.Series:
    return (
        raw.fillna("").astype(str).map(lambda g: [x for x in g.split("|") if x and x != NO_GENRES])
    )


def load_movielens(cfg: DataConfig) -> CanonicalTables:
    """Read a MovieLens release into the canonical interactions / items / users tables."""
    release = RELEASES[cfg.dataset]
    raw_dir = resolve_raw_dir(cfg)
    ratings_path, movies_path = raw_dir / release.ratings, raw_dir / release.movies
    issues: list[ParseIssue] = []
    ratings = _read(ratings_path, release, issues)
    movies = _read(movies_path, release, issues)

    rating_cols = {
        "userId": "user",
        "movieId": "item",
        "rating": "rating",
        "timestamp": "timestamp",
    }
    interactions = ratings.rename(columns=rating_cols)
    interactions["domain"] = cfg.dataset
    interactions["click"] = 1
    if "rating" in interactions:
        # Values are kept raw for validation; the label only needs the numeric reading.
        numeric = pd.to_numeric(interactions["rating"], errors="coerce")
        interactions["like"] = (numeric >= cfg.like_threshold).astype("int8")

    item_cols = {"movieId": "item", "title": "title", "genres": "genres"}
    items = movies.rename(columns=item_cols)
    items["domain"] = cfg.dataset
    if "genres" in items:
        items["categories"] = _genres(items.pop("genres"))
    titles = items["title"].astype(str) if "title" in items else pd.Series("", index=items.index)
    items["year"] = pd.to_numeric(titles.str.extract(_YEAR)[0], errors="coerce")
    text = titles.str.replace(_YEAR, "", regex=True).str.strip()
    sources = {
        "interactions": TableSource(str(ratings_path), rating_cols),
        "users": TableSource(str(ratings_path), {"userId": "user"}),
        "items": TableSource(str(movies_path), item_cols),
    }
    if release.tags and (raw_dir / release.tags).exists():
        tags = _read(raw_dir / release.tags, release, issues)
        per_item = (
            tags.dropna(subset=["tag"])
            .groupby("movieId")["tag"]
            .agg(lambda t: " ".join(dict.fromkeys(str(x).lower() for x in t)))
        )
        if "item" in items:
            text = text + " " + items["item"].map(per_item).fillna("")
        sources["items"] = TableSource(
            str(movies_path), item_cols, extra=[str(raw_dir / release.tags)]
        )
    items["text"] = text.str.strip()

    users = (
        interactions.groupby("user", as_index=False).size().rename(columns={"size": "activity"})
        if "user" in interactions
        else pd.DataFrame({"user": [], "activity": []})
    )
    return CanonicalTables(
        interactions=interactions,
        items=items,
        users=users,
        sources=sources,
        dataset=cfg.dataset,
        rating_scale=release.rating_scale,
        known_genres=release.genres,
        parse_issues=issues,
    )
