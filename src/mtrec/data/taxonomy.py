"""The genres a dataset's items can carry, where known before reading the data. Free of pandas:
the training DAG offers them in its trigger form at parse time, which every task repeats."""

from __future__ import annotations

from mtrec.config import DataConfig

MOVIELENS_GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
MOVIELENS_1M_GENRES = tuple(
    "Children's" if g == "Children" else g for g in MOVIELENS_GENRES if g != "IMAX"
)
_BY_DATASET = {
    "ml-latest-small": MOVIELENS_GENRES,
    "ml-25m": MOVIELENS_GENRES,
    "ml-1m": MOVIELENS_1M_GENRES,
}


def genre_taxonomy(cfg: DataConfig) -> tuple[str, ...]:
    """A MovieLens release's genres, the declared ``data.files.genres``; none for datasets
    whose categories only their data knows (MIND, Amazon)."""
    if cfg.dataset == "files":
        return tuple(cfg.files.genres)
    return _BY_DATASET.get(cfg.dataset, ())
