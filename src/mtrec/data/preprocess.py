"""Canonical tables -> model-ready tables, every choice taken from ``params.preprocess``.

Recipe (``protocol.name: cross-domain``): dedupe (user, item) rows, drop outlier users, k-core,
drop users below the minimum activity, fill or drop items without a year, encode ids
(0 = unknown), split source/target domains by genre, per-user temporal split, hold out the
cold users' target history, thin the target's train rows, sample negatives, derive side
features (user activity and genre profile, item popularity and age) normalised on train rows
only, tokenise item text, and (``cv_folds`` >= 2) assign the target's train/valid rows to folds
for cross-validated model selection. Every rule's effect is counted in ``meta["cleaning"]``.

The single-domain protocols replace the row selection and the split: ``recbole-general`` keeps
ratings above a threshold, applies its own k-core and splits each user's rows at random;
``predefined`` keeps exactly the rows of given train/valid/test files. Every item is then a
target item.

Output (one directory): ``interactions`` (user_idx, item_idx, domain, split, click, like,
rating, timestamp, fold), ``items`` (item, item_idx, domain, tokens, genres, features), ``users``
(user, user_idx, features) and ``meta.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mtrec.config import PreprocessConfig, ProtocolConfig, TargetConfig
from mtrec.data import cleaning, features
from mtrec.data.canonical import CanonicalTables
from mtrec.data.splitting import (
    SOURCE,
    TARGET,
    TEST,
    TRAIN,
    VALID,
    assign_folds,
    hold_out_cold_users,
    random_split,
    sample_negatives,
    temporal_split,
    thin_target,
    valid_from_train,
)
from mtrec.errors import DataValidationError

log = logging.getLogger(__name__)


@dataclass
class Processed:
    """Model-ready tables plus the facts later stages need (vocab sizes, genre names)."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    meta: dict
    # Fixed evaluation candidates of the target's test rows (user_idx, item_idx, negatives).
    candidates: pd.DataFrame | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables to write, by name (candidates only when the dataset ships them)."""
        frames = {"interactions": self.interactions, "items": self.items, "users": self.users}
        return frames | ({} if self.candidates is None else {"candidates": self.candidates})


def assign_domains(items: pd.DataFrame, target: TargetConfig) -> np.ndarray:
    """``target`` for items of domain ``target.domain`` when set, else for items carrying any of
    ``target.genres``; ``source`` for the rest."""
    if target.domain is not None:
        known = sorted(items["domain"].unique())
        if target.domain not in known:
            raise DataValidationError(
                f"target.domain {target.domain!r} is not a domain of the data: {known}"
            )
        return np.where(items["domain"] == target.domain, TARGET, SOURCE)
    wanted = set(target.genres)
    is_target = items["categories"].map(lambda cats: bool(wanted.intersection(cats)))
    if not is_target.any():
        known = sorted({g for cats in items["categories"] for g in cats})
        raise DataValidationError(
            f"target.genres {target.genres} match no item; genres in the data: {known}"
        )
    return np.where(is_target, TARGET, SOURCE)


def read_predefined_split(split_dir: str | Path) -> pd.DataFrame:
    """(user, item, split) rows of ``train.tsv`` / ``valid.tsv`` / ``test.tsv`` (header
    ``user<TAB>item``, the dataset's raw ids)."""
    parts = []
    for split in (TRAIN, VALID, TEST):
        path = Path(split_dir) / f"{split}.tsv"
        try:
            frame = pd.read_csv(path, sep="\t", dtype={"user": "int64", "item": "int64"})
        except FileNotFoundError as exc:
            raise DataValidationError(f"{path}: predefined split file missing") from exc
        except (ValueError, KeyError) as exc:
            raise DataValidationError(f"{path}: expected int columns user, item: {exc}") from exc
        parts.append(frame[["user", "item"]].assign(split=split))
    rows = pd.concat(parts, ignore_index=True)
    repeated = rows.duplicated(["user", "item"])
    if repeated.any():
        raise DataValidationError(
            f"{split_dir}: {int(repeated.sum())} (user, item) pairs appear in more than one "
            f"split file, e.g. {rows[repeated].head(3).to_dict('records')}"
        )
    return rows


def _shipped_split(inter: pd.DataFrame) -> pd.DataFrame:
    """The dataset's own train/test rows (protocol ``dataset``)."""
    splits = set(inter["split"].unique()) if "split" in inter else set()
    if not splits or not splits <= {TRAIN, TEST}:
        raise DataValidationError(
            f"protocol dataset needs the interactions' split column with values train / test; "
            f"found {sorted(splits) if splits else 'no split column'}"
        )
    return inter


def _select_cross_domain(inter: pd.DataFrame, cfg: PreprocessConfig, stats: dict) -> pd.DataFrame:
    inter, stats["outlier_users"] = cleaning.drop_outlier_users(inter, cfg.outliers)
    inter, stats["k_core_dropped_rows"] = cleaning.k_core(inter, cfg.k_core)
    activity = inter.groupby("user")["item"].transform("size")
    stats["inactive_users"] = int(inter.loc[activity < cfg.min_user_interactions, "user"].nunique())
    return inter[activity >= cfg.min_user_interactions]


def _select_recbole(inter: pd.DataFrame, protocol: ProtocolConfig, stats: dict) -> pd.DataFrame:
    positive = inter["rating"] >= protocol.recbole.positive_threshold
    stats["below_positive_threshold"] = int((~positive).sum())
    inter, stats["k_core_dropped_rows"] = cleaning.k_core(inter[positive], protocol.recbole.k_core)
    return inter


def _select_predefined(inter: pd.DataFrame, protocol: ProtocolConfig, stats: dict) -> pd.DataFrame:
    split = read_predefined_split(protocol.split_dir)
    kept = inter.merge(split, on=["user", "item"])
    if len(kept) != len(split):
        missing = split.merge(inter[["user", "item"]], how="left", indicator=True)
        missing = missing.loc[missing["_merge"] == "left_only", ["user", "item", "split"]]
        raise DataValidationError(
            f"{protocol.split_dir}: {len(missing)} (user, item) pairs of the split files are not "
            f"in the interactions, e.g. {missing.head(3).to_dict('records')}"
        )
    stats["not_in_split_files"] = len(inter) - len(kept)
    return kept


def _clean(
    tables: CanonicalTables, cfg: PreprocessConfig, protocol: ProtocolConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    stats: dict[str, int] = {}
    inter, stats["merged_duplicates"] = cleaning.dedupe(tables.interactions, cfg.duplicates)
    items, stats["items_missing_year"] = cleaning.fill_years(tables.items, cfg.missing_year)
    inter = inter[inter["item"].isin(items["item"])]
    select = {
        "cross-domain": lambda: _select_cross_domain(inter, cfg, stats),
        "dataset": lambda: _select_cross_domain(_shipped_split(inter), cfg, stats),
        "recbole-general": lambda: _select_recbole(inter, protocol, stats),
        "predefined": lambda: _select_predefined(inter, protocol, stats),
    }
    inter = select[protocol.name]()
    return inter, items[items["item"].isin(inter["item"])].sort_values("item"), stats


def _split(
    inter: pd.DataFrame,
    target: TargetConfig,
    cfg: PreprocessConfig,
    protocol: ProtocolConfig,
    rng: np.random.Generator,
) -> pd.DataFrame:
    if protocol.name == "recbole-general":
        return inter.assign(split=random_split(inter, protocol.recbole.ratios, rng))
    if protocol.name == "predefined":
        return inter
    split = (
        valid_from_train(inter["split"], cfg.valid_fraction, rng)  # the dataset's own test rows
        if protocol.name == "dataset"
        else temporal_split(inter, cfg.valid_fraction, cfg.test_fraction)
    )
    inter = hold_out_cold_users(inter.assign(split=split), target.cold_user_fraction, rng)
    return thin_target(inter, target.train_fraction, rng)


def map_candidates(
    candidates: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame, rows: pd.DataFrame
) -> tuple[pd.DataFrame, int]:
    """The dataset's fixed candidates of target test rows, in model indices. Lines whose user
    or positive did not survive cleaning (or are not a target test row) are dropped and
    counted; a negative outside the target catalogue is an error."""
    item_idx = items.loc[items["domain"] == TARGET].set_index("item")["item_idx"]
    lines = candidates.merge(users[["user", "user_idx"]], on="user")
    lines = lines.assign(item_idx=lines["item"].map(item_idx)).dropna(subset=["item_idx"])
    test = rows.loc[(rows["domain"] == TARGET) & (rows["split"] == TEST), ["user_idx", "item_idx"]]
    lines = lines.astype({"item_idx": "int64"}).merge(test, on=["user_idx", "item_idx"])
    negatives = np.concatenate(lines["negatives"].to_numpy()) if len(lines) else np.array([])
    unknown = ~np.isin(negatives, item_idx.index.to_numpy())
    if unknown.any():
        raise DataValidationError(
            f"candidates: {int(unknown.sum())} negatives are not target-domain items of the "
            f"cleaned catalogue, e.g. {sorted(set(negatives[unknown].tolist()))[:5]}"
        )
    lines["negatives"] = [item_idx.reindex(n).to_numpy(np.int64) for n in lines["negatives"]]
    return lines[["user_idx", "item_idx", "negatives"]], len(candidates) - len(lines)


def _side_features(
    inter: pd.DataFrame, items: pd.DataFrame, n_users: int, n_genres: int, method: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    train = inter[(inter["split"] == TRAIN) & (inter["click"] == 1)]
    user_feats = features.user_features(train, items, n_genres, n_users)
    item_feats = features.item_features(train, items)
    trained_users = np.unique(train["user_idx"])
    trained_items = items["item_idx"].isin(train["item_idx"]).to_numpy()
    user_feats[["activity"]], user_stats = features.normalise(
        user_feats[["activity"]], user_feats.loc[trained_users, ["activity"]], method
    )
    item_feats, item_stats = features.normalise(item_feats, item_feats[trained_items], method)
    return user_feats, item_feats, {"users": user_stats, "items": item_stats}


def preprocess(
    tables: CanonicalTables,
    target: TargetConfig,
    cfg: PreprocessConfig,
    protocol: ProtocolConfig | None = None,
) -> Processed:
    """The whole recipe; deterministic for a given seed."""
    protocol = protocol or ProtocolConfig()
    rng = np.random.default_rng(cfg.seed)
    inter, items, stats = _clean(tables, cfg, protocol)
    domains = (
        np.full(len(items), TARGET) if protocol.single_domain else assign_domains(items, target)
    )
    items = items.assign(item_idx=np.arange(1, len(items) + 1), domain=domains)
    users = pd.DataFrame({"user": np.sort(inter["user"].unique())})
    users["user_idx"] = np.arange(1, len(users) + 1)
    inter = inter.merge(users, on="user").merge(
        items[["item", "item_idx", "domain"]], on="item", suffixes=("_raw", "")
    )
    columns = ["user_idx", "item_idx", "domain", "timestamp", "rating", "click", "like"]
    if "split" in inter:  # predefined: the split came with the rows
        columns.append("split")
    inter = _split(inter[columns], target, cfg, protocol, rng)
    n_items, n_users = len(items) + 1, len(users) + 1
    negatives = sample_negatives(inter, items, n_items, cfg.negatives_per_positive, rng)
    rows = pd.concat([inter, negatives], ignore_index=True).astype(
        {"click": "int8", "like": "int8", "rating": "float32"}
    )
    rows["fold"] = assign_folds(rows, cfg.cv_folds, rng)

    genre_names = sorted({g for cats in items["categories"] for g in cats})
    genre_id = {g: i for i, g in enumerate(genre_names)}
    items["genres"] = [[genre_id[g] for g in cats] for cats in items["categories"]]
    tokens, n_tokens = features.tokenize(items["text"], cfg.max_tokens, cfg.min_token_count)
    user_feats, item_feats, scaling = _side_features(
        rows, items, n_users, len(genre_names), cfg.normalize
    )
    out_items = pd.DataFrame(
        {
            "item": items["item"].to_numpy(),
            "item_idx": items["item_idx"].to_numpy(),
            "domain": items["domain"].to_numpy(),
            "tokens": tokens,
            "genres": items["genres"],
            "features": item_feats.to_numpy().tolist(),
        }
    )
    users["features"] = [
        [a, *p]
        for a, p in zip(
            user_feats.loc[users["user_idx"], "activity"],
            user_feats.loc[users["user_idx"], "genre_profile"],
            strict=True,
        )
    ]
    counts = rows[rows["click"] == 1].groupby(["domain", "split"]).size()
    meta = {
        "n_users": n_users,
        "n_items": n_items,
        "n_tokens": n_tokens,
        "genres": genre_names,
        "target_genres": list(target.genres),
        "max_tokens": cfg.max_tokens,
        "user_features": ["activity", *genre_names],
        "item_features": list(item_feats.columns),
        "scaling": scaling,
        "positives": {f"{d}/{s}": int(n) for (d, s), n in counts.items()},
        "negatives": len(negatives),
        "cleaning": stats,
        "cv_folds": cfg.cv_folds,
        "protocol": protocol.name,
    }
    candidates = None
    if tables.candidates is not None and not protocol.single_domain:
        own = tables.candidates
        if "domain" in own:
            own = own[own["domain"] == target.domain]
        candidates, stats["candidates_dropped"] = map_candidates(own, users, items, inter)
        meta["candidates"] = len(candidates)
    log.info("preprocessed: %s; cleaning: %s", meta["positives"], stats)
    return Processed(rows, out_items, users, meta, candidates)
