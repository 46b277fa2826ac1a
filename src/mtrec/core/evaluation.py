"""Test-time evaluation of a trained model: per-task metrics and full-ranking metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from mtrec.core.metrics import auc, mae, ranking_metrics, rmse
from mtrec.core.multitask import MultiTaskModel


@dataclass(frozen=True)
class RankingTask:
    """Full-ranking setup: which users, over which candidate items, with what masked/held out.

    ``seen`` and ``relevant`` are (user index, candidate column) pairs.
    """

    users: torch.Tensor
    candidates: torch.Tensor
    seen: tuple[torch.Tensor, torch.Tensor]
    relevant: tuple[torch.Tensor, torch.Tensor]


def _summary(per_user: Mapping[str, torch.Tensor], k: int) -> dict[str, float]:
    return {
        f"{name}@{k}" if name != "mrr" else name: v.mean().item() for name, v in per_user.items()
    }


@torch.no_grad()
def evaluate_model(
    model: MultiTaskModel, rows: Mapping[str, torch.Tensor], task: RankingTask, k: int, block: int
) -> dict[str, float]:
    """click AUC (all rows), like AUC (clicked rows), rating RMSE/MAE (observed rows), and
    NDCG/HR/Recall@K + MRR over every candidate with seen ones masked."""
    model.eval()
    out = model(rows["user"], rows["item"])
    clicked = rows["click"] > 0
    metrics = {
        "click_auc": auc(out["click"], rows["click"]),
        "like_auc": auc(out["like"][clicked], rows["like"][clicked]),
        "rating_rmse": rmse(out["rating"][clicked], rows["rating"][clicked]),
        "rating_mae": mae(out["rating"][clicked], rows["rating"][clicked]),
    }
    per_user = ranking_metrics(
        lambda users: model.score_matrix(users, task.candidates),
        task.users,
        task.seen,
        task.relevant,
        len(task.candidates),
        k,
        block,
    )
    return metrics | _summary(per_user, k)


def evaluate_popularity(
    popularity: torch.Tensor, task: RankingTask, k: int, block: int
) -> dict[str, float]:
    """The same ranking metrics for a non-personalised baseline (``popularity`` per candidate)."""
    per_user = ranking_metrics(
        lambda users: popularity.double().expand(len(users), -1),
        task.users,
        task.seen,
        task.relevant,
        len(task.candidates),
        k,
        block,
    )
    return _summary(per_user, k)
