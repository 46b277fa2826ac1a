"""pandas tables -> torch tensors, built once per stage (the core never sees pandas)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mtrec.core.evaluation import RankingTask

TASK_COLUMNS = ("click", "like", "rating")


def item_features(
    items: pd.DataFrame, n_items: int, max_tokens: int, n_genres: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [n_items, max_tokens] (0-padded) and genre multi-hot [n_items, n_genres]."""
    tokens = np.zeros((n_items, max_tokens), dtype=np.int64)
    genres = np.zeros((n_items, n_genres), dtype=np.float32)
    for idx, toks, gens in zip(items["item_idx"], items["tokens"], items["genres"], strict=True):
        tokens[idx, : len(toks)] = toks
        genres[idx, list(gens)] = 1.0
    return torch.from_numpy(tokens), torch.from_numpy(genres)


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


def ranking_task(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    domain: str,
    seen_splits: tuple[str, ...],
    held_out: str,
) -> RankingTask:
    """Rank all items of ``domain`` for every user with a positive in ``held_out``, masking the
    user's positives in ``seen_splits``."""
    candidates = np.sort(
        items.loc[items["domain"] == domain, "item_idx"].to_numpy(np.int64, copy=True)
    )
    column = np.full(int(items["item_idx"].max()) + 1, -1, dtype=np.int64)
    column[candidates] = np.arange(len(candidates))
    positives = interactions[(interactions["domain"] == domain) & (interactions["click"] == 1)]

    def pairs(frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.as_tensor(frame["user_idx"].to_numpy(np.int64, copy=True)),
            torch.as_tensor(column[frame["item_idx"].to_numpy(np.int64)]),
        )

    relevant = positives[positives["split"] == held_out]
    return RankingTask(
        users=torch.as_tensor(np.sort(relevant["user_idx"].unique()).astype(np.int64)),
        candidates=torch.as_tensor(candidates),
        seen=pairs(positives[positives["split"].isin(seen_splits)]),
        relevant=pairs(relevant),
    )


def popularity(
    interactions: pd.DataFrame, task: RankingTask, domain: str, split: str
) -> torch.Tensor:
    """Positive count per candidate in ``split`` of ``domain`` (the popularity baseline)."""
    rows = interactions[
        (interactions["domain"] == domain)
        & (interactions["split"] == split)
        & (interactions["click"] == 1)
    ]
    counts = rows["item_idx"].value_counts()
    return torch.as_tensor(
        counts.reindex(task.candidates.numpy(), fill_value=0).to_numpy(np.float64)
    )
