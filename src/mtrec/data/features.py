"""Derived side features, normalised with statistics of the training rows only (no leakage)."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd

_TOKEN = re.compile(r"[a-z0-9']+")
SECONDS_PER_YEAR = 365.25 * 24 * 3600


def normalise(values: pd.DataFrame, fit_on: pd.DataFrame, method: str) -> tuple[pd.DataFrame, dict]:
    """Scale columns by min-max or z-score statistics of ``fit_on``; returns the statistics."""
    if method == "minmax":
        low, span = fit_on.min(), (fit_on.max() - fit_on.min()).replace(0, 1.0)
        return (values - low) / span, {"min": low.to_dict(), "span": span.to_dict()}
    mean, std = fit_on.mean(), fit_on.std().replace(0, 1.0).fillna(1.0)
    return (values - mean) / std, {"mean": mean.to_dict(), "std": std.to_dict()}


def user_features(
    train: pd.DataFrame, items: pd.DataFrame, n_genres: int, n_users: int
) -> pd.DataFrame:
    """Per user_idx: log activity and the genre-interest profile (share of train positives
    per genre). Users without train history get zeros."""
    pairs = train[["user_idx", "item_idx"]].merge(
        items[["item_idx", "genres"]].explode("genres").dropna(), on="item_idx"
    )
    profile = np.zeros((n_users, n_genres))
    np.add.at(profile, (pairs["user_idx"].to_numpy(), pairs["genres"].to_numpy(np.int64)), 1.0)
    profile /= np.maximum(profile.sum(1, keepdims=True), 1.0)
    activity = np.log1p(np.bincount(train["user_idx"], minlength=n_users))
    return pd.DataFrame({"activity": activity, "genre_profile": list(profile)})


def item_features(train: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Per item row: log popularity in train, and (datasets with years) age in years at the
    latest train time."""
    popularity = np.log1p(train["item_idx"].value_counts().reindex(items["item_idx"], fill_value=0))
    columns = {"popularity": popularity.to_numpy()}
    if items["year"].notna().any():
        now_year = 1970 + train["timestamp"].max() / SECONDS_PER_YEAR
        columns["age"] = (now_year - items["year"]).clip(lower=0).to_numpy()
    return pd.DataFrame(columns, index=items.index)


def tokenize(texts: pd.Series, max_tokens: int, min_count: int) -> tuple[list[list[int]], int]:
    """Word ids per text (vocab of words seen in >= ``min_count`` items; 0 = padding)."""
    words = texts.fillna("").str.lower().map(_TOKEN.findall)
    counts = Counter(w for ws in words for w in set(ws))
    vocab = {w: i + 1 for i, w in enumerate(sorted(w for w, c in counts.items() if c >= min_count))}
    ids = [[vocab[w] for w in ws if w in vocab][:max_tokens] for ws in words]
    return ids, len(vocab) + 1
