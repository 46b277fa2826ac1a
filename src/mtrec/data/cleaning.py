"""Cleaning rules of the preprocessing recipe; each returns the data and what it removed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtrec.config import OutlierConfig


def dedupe(inter: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, int]:
    """One row per (user, item): keep the ``last`` or ``first`` by time, or the ``mean``
    rating at the latest time. Returns the rows and how many were merged away."""
    ordered = inter.sort_values("timestamp", kind="stable")
    if policy == "mean":
        kept = ordered.drop_duplicates(["user", "item"], keep="last")
        means = ordered.groupby(["user", "item"])["rating"].mean()
        kept = kept.assign(
            rating=means.reindex(pd.MultiIndex.from_frame(kept[["user", "item"]])).to_numpy()
        )
    else:
        kept = ordered.drop_duplicates(["user", "item"], keep=policy)
    return kept, len(inter) - len(kept)


def drop_outlier_users(inter: pd.DataFrame, rule: OutlierConfig) -> tuple[pd.DataFrame, int]:
    """Drop users whose log activity is an outlier (bots, shared accounts) by IQR or z-score."""
    if rule.rule == "none":
        return inter, 0
    activity = np.log1p(inter.groupby("user").size())
    if rule.rule == "iqr":
        q1, q3 = activity.quantile([0.25, 0.75])
        bad = (activity < q1 - rule.threshold * (q3 - q1)) | (
            activity > q3 + rule.threshold * (q3 - q1)
        )
    else:
        std = activity.std() or 1.0
        bad = ((activity - activity.mean()) / std).abs() > rule.threshold
    outliers = activity.index[bad]
    return inter[~inter["user"].isin(outliers)], len(outliers)


def k_core(inter: pd.DataFrame, k: int) -> tuple[pd.DataFrame, int]:
    """Repeatedly drop users and items with fewer than ``k`` interactions (0 = off)."""
    before = len(inter)
    while k > 0:
        users = inter.groupby("user")["item"].transform("size")
        items = inter.groupby("item")["user"].transform("size")
        keep = (users >= k) & (items >= k)
        if keep.all():
            break
        inter = inter[keep]
    return inter, before - len(inter)


def fill_years(items: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, int]:
    """Items without a release year: ``impute`` the median year, or ``drop`` the items. A
    catalogue without any year (the dataset has none) is left as it is."""
    missing = items["year"].isna()
    if missing.all():
        return items, 0
    if policy == "drop":
        return items[~missing], int(missing.sum())
    return items.assign(year=items["year"].fillna(items["year"].median())), int(missing.sum())
