"""Canonical tables -> model-ready tables: clean, encode, split domains, split time, negatives.

Output (one directory): ``interactions`` (user_idx, item_idx, domain, split, click, like,
rating), ``items`` (item, item_idx, domain, tokens, genres), ``users`` (user, user_idx) and
``meta.json``. Index 0 is reserved for unknown users / items / tokens.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mtrec.config import PreprocessConfig, TargetConfig
from mtrec.data.canonical import CanonicalTables
from mtrec.errors import DataValidationError

log = logging.getLogger(__name__)

SOURCE, TARGET = "source", "target"
TRAIN, VALID, TEST = "train", "valid", "test"
_TOKEN = re.compile(r"[a-z0-9']+")
_MAX_RESAMPLE_ROUNDS = 50


@dataclass
class Processed:
    """Model-ready tables plus the facts later stages need (vocab sizes, genre names)."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    meta: dict


def clean(interactions: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop rows without ids/rating and duplicate (user, item) pairs, keeping the latest."""
    before = len(interactions)
    kept = interactions.dropna(subset=["user", "item", "rating", "timestamp"])
    missing = before - len(kept)
    kept = kept.sort_values("timestamp").drop_duplicates(["user", "item"], keep="last")
    return kept, {"dropped_missing": missing, "dropped_duplicates": before - missing - len(kept)}


def assign_domains(items: pd.DataFrame, genres: list[str]) -> pd.Series:
    """``target`` for items carrying any of ``genres``, else ``source``."""
    wanted = set(genres)
    is_target = items["categories"].map(lambda cats: bool(wanted.intersection(cats)))
    if not is_target.any():
        known = sorted({g for cats in items["categories"] for g in cats})
        raise DataValidationError(
            f"target.genres {genres} match no item; genres in the data: {known}"
        )
    return np.where(is_target, TARGET, SOURCE)


def temporal_split(frame: pd.DataFrame, valid_fraction: float, test_fraction: float) -> pd.Series:
    """Per (user, domain): the latest interactions go to test, the ones before to valid.

    Groups with fewer than 3 interactions stay wholly in train (nothing left to learn from).
    """
    order = (
        frame.sort_values(["timestamp", "item_idx"])
        .groupby(["user_idx", "domain"])
        .cumcount(ascending=False)
    )
    size = frame.groupby(["user_idx", "domain"])["item_idx"].transform("size")
    n_test = np.maximum(1, np.floor(size * test_fraction)).where(size >= 3, 0)
    n_valid = (
        np.maximum(1, np.floor(size * valid_fraction)) if valid_fraction > 0 else size * 0
    ).where(size >= 3, 0)
    rank = order.reindex(frame.index)
    return pd.Series(
        np.select([rank < n_test, rank < n_test + n_valid], [TEST, VALID], TRAIN), index=frame.index
    )


def thin_target(frame: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """Keep ``fraction`` of each user's target train rows (rounded) to simulate a sparse domain."""
    if fraction >= 1.0:
        return frame
    is_thinned = (frame["domain"] == TARGET) & (frame["split"] == TRAIN)
    rows = frame[is_thinned]
    shuffled = rows.assign(_r=rng.random(len(rows))).sort_values("_r")
    rank = shuffled.groupby("user_idx").cumcount()
    keep_n = np.floor(shuffled.groupby("user_idx")["user_idx"].transform("size") * fraction + 0.5)
    dropped = shuffled.index[rank >= keep_n]
    return frame.drop(index=dropped)


def sample_negatives(
    positives: pd.DataFrame, items: pd.DataFrame, n_items: int, k: int, rng: np.random.Generator
) -> pd.DataFrame:
    """``k`` unobserved items per positive row, from the row's own domain (vectorised)."""
    seen = np.unique(
        positives["user_idx"].to_numpy(np.int64) * n_items
        + positives["item_idx"].to_numpy(np.int64)
    )
    parts = []
    for domain, rows in positives.groupby("domain"):
        pool = items.loc[items["domain"] == domain, "item_idx"].to_numpy(np.int64)
        users = np.repeat(rows["user_idx"].to_numpy(np.int64), k)
        cand = pool[rng.integers(len(pool), size=len(users))]
        for _ in range(_MAX_RESAMPLE_ROUNDS):
            bad = np.isin(users * n_items + cand, seen)
            if not bad.any():
                break
            cand[bad] = pool[rng.integers(len(pool), size=int(bad.sum()))]
        ok = ~np.isin(users * n_items + cand, seen)
        parts.append(
            pd.DataFrame(
                {
                    "user_idx": users[ok],
                    "item_idx": cand[ok],
                    "domain": domain,
                    "split": np.repeat(rows["split"].to_numpy(), k)[ok],
                    "timestamp": np.repeat(rows["timestamp"].to_numpy(), k)[ok],
                }
            )
        )
    negatives = pd.concat(parts, ignore_index=True)
    return negatives.assign(click=0, like=0, rating=np.nan)


def tokenize(texts: pd.Series, max_tokens: int, min_count: int) -> tuple[list[list[int]], int]:
    """Word ids per text (vocab of words seen in >= ``min_count`` items; 0 = padding)."""
    words = texts.fillna("").str.lower().map(_TOKEN.findall)
    counts = Counter(w for ws in words for w in set(ws))
    vocab = {w: i + 1 for i, w in enumerate(sorted(w for w, c in counts.items() if c >= min_count))}
    ids = [[vocab[w] for w in ws if w in vocab][:max_tokens] for ws in words]
    return ids, len(vocab) + 1


def preprocess(tables: CanonicalTables, target: TargetConfig, cfg: PreprocessConfig) -> Processed:
    """The whole recipe; deterministic for a given seed."""
    rng = np.random.default_rng(cfg.seed)
    inter, stats = clean(tables.interactions)
    activity = inter.groupby("user")["item"].transform("size")
    stats["dropped_inactive_users"] = int(
        inter.loc[activity < cfg.min_user_interactions, "user"].nunique()
    )
    inter = inter[activity >= cfg.min_user_interactions]

    items = tables.items[tables.items["item"].isin(inter["item"])].sort_values("item")
    items = items.assign(
        item_idx=np.arange(1, len(items) + 1), domain=assign_domains(items, target.genres)
    )
    users = pd.DataFrame({"user": np.sort(inter["user"].unique())})
    users["user_idx"] = np.arange(1, len(users) + 1)

    inter = inter.merge(users, on="user").merge(
        items[["item", "item_idx", "domain"]], on="item", suffixes=("_raw", "")
    )
    inter = inter[["user_idx", "item_idx", "domain", "timestamp", "rating", "click", "like"]]
    inter["split"] = temporal_split(inter, cfg.valid_fraction, cfg.test_fraction)
    inter = thin_target(inter, target.train_fraction, rng)
    n_items = len(items) + 1
    negatives = sample_negatives(inter, items, n_items, cfg.negatives_per_positive, rng)
    rows = pd.concat([inter, negatives], ignore_index=True).astype(
        {"click": "int8", "like": "int8", "rating": "float32"}
    )

    genre_names = sorted({g for cats in items["categories"] for g in cats})
    genre_id = {g: i for i, g in enumerate(genre_names)}
    tokens, n_tokens = tokenize(items["text"], cfg.max_tokens, cfg.min_token_count)
    out_items = pd.DataFrame(
        {
            "item": items["item"].to_numpy(),
            "item_idx": items["item_idx"].to_numpy(),
            "domain": items["domain"].to_numpy(),
            "tokens": tokens,
            "genres": [[genre_id[g] for g in cats] for cats in items["categories"]],
        }
    )
    counts = rows[rows["click"] == 1].groupby(["domain", "split"]).size()
    meta = {
        "n_users": len(users) + 1,
        "n_items": n_items,
        "n_tokens": n_tokens,
        "genres": genre_names,
        "target_genres": list(target.genres),
        "max_tokens": cfg.max_tokens,
        "positives": {f"{d}/{s}": int(n) for (d, s), n in counts.items()},
        "negatives": len(negatives),
        "cleaning": stats,
    }
    log.info("preprocessed: %s", meta["positives"])
    return Processed(rows, out_items, users, meta)
