"""pandas tables -> torch tensors, built once per stage (the core never sees pandas)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mtrec.core.evaluation import RankingTask, SampledTask

TASK_COLUMNS = ("click", "like", "rating")


def side_features(items: pd.DataFrame, users: pd.DataFrame, meta: dict) -> dict[str, torch.Tensor]:
    """Dense side data for the model, indexed by item_idx / user_idx (row 0 = unknown):
    token ids (0-padded), genre multi-hot, numeric item features, numeric user features."""
    n_items, n_users = meta["n_items"], meta["n_users"]
    tokens = np.zeros((n_items, meta["max_tokens"]), dtype=np.int64)
    genres = np.zeros((n_items, len(meta["genres"])), dtype=np.float32)
    for idx, toks, gens in zip(items["item_idx"], items["tokens"], items["genres"], strict=True):
        tokens[idx, : len(toks)] = toks
        genres[idx, list(gens)] = 1.0
    item_numeric = np.zeros((n_items, len(meta["item_features"])), dtype=np.float32)
    item_numeric[items["item_idx"].to_numpy()] = np.stack(items["features"].to_numpy())
    user_numeric = np.zeros((n_users, len(meta["user_features"])), dtype=np.float32)
    user_numeric[users["user_idx"].to_numpy()] = np.stack(users["features"].to_numpy())
    return {
        "item_tokens": torch.from_numpy(tokens),
        "item_genres": torch.from_numpy(genres),
        "item_features": torch.from_numpy(item_numeric),
        "user_features": torch.from_numpy(user_numeric),
    }


def user_history(positives: pd.DataFrame, n_users: int, length: int) -> torch.Tensor:
    """Each user's last ``length`` items of ``positives`` by time, oldest first, left-padded
    with 0: [n_users, length]."""
    ordered = positives.sort_values(["user_idx", "timestamp", "item_idx"])
    from_end = ordered.groupby("user_idx").cumcount(ascending=False).to_numpy()
    keep = from_end < length
    history = np.zeros((n_users, length), dtype=np.int64)
    history[ordered["user_idx"].to_numpy()[keep], length - 1 - from_end[keep]] = ordered[
        "item_idx"
    ].to_numpy()[keep]
    return torch.from_numpy(history)


def task_columns(rows: pd.DataFrame) -> dict[str, torch.Tensor]:
    """user / item index tensors plus one float label tensor per task (NaN ratings -> 0;
    the rating loss only reads observed rows)."""
    return {
        "user": torch.as_tensor(rows["user_idx"].to_numpy(np.int64, copy=True)),
        "item": torch.as_tensor(rows["item_idx"].to_numpy(np.int64, copy=True)),
        **{
            t: torch.as_tensor(np.nan_to_num(rows[t].to_numpy(np.float32, copy=True)))
            for t in TASK_COLUMNS
        },
    }


def positive_edges(columns: dict[str, torch.Tensor]) -> torch.Tensor:
    """The (user, item) pairs [2, E] of the clicked rows of ``task_columns`` output."""
    clicked = columns["click"] > 0
    return torch.stack([columns["user"][clicked], columns["item"][clicked]])


def domain_items(items: pd.DataFrame, domain: str) -> np.ndarray:
    """Sorted item_idx of one domain: the candidates of full ranking."""
    return np.sort(items.loc[items["domain"] == domain, "item_idx"].to_numpy(np.int64, copy=True))


def ranking_task(
    seen: pd.DataFrame,
    relevant: pd.DataFrame,
    candidates: np.ndarray,
    groups: dict[str, np.ndarray] | None = None,
) -> RankingTask:
    """Rank every candidate (item_idx) for each user with a ``relevant`` row, masking the
    user's ``seen`` rows; both frames hold positive (user_idx, item_idx) rows. ``groups`` name
    user_idx subsets whose metrics are reported too."""
    column = np.full(int(candidates.max()) + 1, -1, dtype=np.int64)
    column[candidates] = np.arange(len(candidates))

    def pairs(frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.as_tensor(frame["user_idx"].to_numpy(np.int64, copy=True)),
            torch.as_tensor(column[frame["item_idx"].to_numpy(np.int64)]),
        )

    users = np.sort(relevant["user_idx"].unique()).astype(np.int64)
    return RankingTask(
        users=torch.as_tensor(users),
        candidates=torch.as_tensor(candidates),
        seen=pairs(seen),
        relevant=pairs(relevant),
        groups={
            name: torch.as_tensor(np.isin(users, members))
            for name, members in (groups or {}).items()
        },
    )


def sampled_task(
    seen: pd.DataFrame,
    relevant: pd.DataFrame,
    candidates: np.ndarray,
    negatives: int,
    rng: np.random.Generator,
    setting: str = "eval.sampled_negatives",
) -> SampledTask:
    """Each ``relevant`` row with ``negatives`` candidates drawn without replacement from those
    the user has neither seen nor holds out; ``setting`` is the params key that asked for
    ``negatives`` (named when the catalogue is too small)."""
    known = pd.concat([seen, relevant])[["user_idx", "item_idx"]].groupby("user_idx")["item_idx"]
    pools = {user: np.setdiff1d(candidates, items) for user, items in known}
    users = relevant["user_idx"].to_numpy(np.int64, copy=True)
    short = sorted({int(u) for u in users if len(pools[u]) < negatives})
    if short:
        raise ValueError(
            f"{len(short)} users have fewer than {negatives} unseen candidates (e.g. user_idx "
            f"{short[:3]}); lower {setting}"
        )
    drawn = np.stack([rng.choice(pools[u], size=negatives, replace=False) for u in users])
    items = np.concatenate([relevant["item_idx"].to_numpy(np.int64)[:, None], drawn], axis=1)
    return SampledTask(users=torch.as_tensor(users), items=torch.as_tensor(items))


def fixed_task(candidates: pd.DataFrame) -> SampledTask:
    """The sampled protocol on the dataset's own candidates (user_idx, item_idx, negatives)."""
    negatives = np.stack(candidates["negatives"].to_numpy()).astype(np.int64)
    items = np.concatenate([candidates["item_idx"].to_numpy(np.int64)[:, None], negatives], 1)
    users = candidates["user_idx"].to_numpy(np.int64, copy=True)
    return SampledTask(users=torch.as_tensor(users), items=torch.as_tensor(items))


def popularity(train: pd.DataFrame, task: RankingTask) -> torch.Tensor:
    """Positive count per candidate in ``train`` positives (the popularity baseline)."""
    counts = train["item_idx"].value_counts()
    return torch.as_tensor(
        counts.reindex(task.candidates.numpy(), fill_value=0).to_numpy(np.float64)
    )
