"""Splits of the preprocessing recipe: per-user temporal split, target thinning, negatives."""

from __future__ import annotations

import numpy as np
import pandas as pd

SOURCE, TARGET = "source", "target"
TRAIN, VALID, TEST = "train", "valid", "test"
_MAX_RESAMPLE_ROUNDS = 50


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


def random_split(
    frame: pd.DataFrame, ratios: tuple[float, float, float], rng: np.random.Generator
) -> pd.Series:
    """Per user, a random train/valid/test split by ``ratios``, counted as RecBole counts
    (``split_by_ratio``): valid and test get floor(ratio * n) rows, and a user with fewer than
    1/ratio rows still gives one to each while more than one row stays in train."""
    shuffled = frame.assign(_r=rng.random(len(frame))).sort_values(["user_idx", "_r"])
    size = shuffled.groupby("user_idx")["item_idx"].transform("size").to_numpy()
    n_valid, n_test = (np.floor(size * r).astype(np.int64) for r in ratios[1:])
    n_train = size - n_valid - n_test
    for count, ratio in ((n_test, ratios[2]), (n_valid, ratios[1])):
        bump = (n_train > 1) & (size * ratio > 0) & (size * ratio < 1)
        count += bump
        n_train -= bump
    rank = shuffled.groupby("user_idx").cumcount().to_numpy()
    split = np.select([rank < n_train, rank < n_train + n_valid], [TRAIN, VALID], TEST)
    return pd.Series(split, index=shuffled.index).reindex(frame.index)


def valid_from_train(split: pd.Series, fraction: float, rng: np.random.Generator) -> pd.Series:
    """Move ``fraction`` of the train rows, drawn at random, to valid (early stopping) when the
    dataset ships only train and test rows."""
    moved = (split == TRAIN).to_numpy() & (rng.random(len(split)) < fraction)
    return split.mask(moved, VALID)


def hold_out_cold_users(
    frame: pd.DataFrame, fraction: float, rng: np.random.Generator
) -> pd.DataFrame:
    """Drop the target train and valid rows of ``fraction`` of the users with target test rows:
    they are new to the target domain and known only from the source (pure transfer)."""
    is_target = frame["domain"] == TARGET
    candidates = np.sort(frame.loc[is_target & (frame["split"] == TEST), "user_idx"].unique())
    cold = rng.choice(candidates, size=round(fraction * len(candidates)), replace=False)
    history = is_target & frame["split"].isin([TRAIN, VALID]) & frame["user_idx"].isin(cold)
    return frame[~history]


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


def assign_folds(rows: pd.DataFrame, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold 0..k-1 for each target train/valid row (k-fold model selection); -1 elsewhere, and
    everywhere when ``k`` < 2 (no random numbers are drawn then, so other splits stay put)."""
    fold = np.full(len(rows), -1, dtype=np.int8)
    if k >= 2:
        pool = ((rows["domain"] == TARGET) & rows["split"].isin([TRAIN, VALID])).to_numpy()
        fold[pool] = rng.integers(k, size=int(pool.sum()))
    return fold
