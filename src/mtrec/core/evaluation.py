"""Test-time evaluation of a trained model: per-task metrics, full-ranking metrics (overall and
per user group, e.g. cold users) and the sampled-candidates protocol."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from mtrec.core.metrics import auc, mae, ranking_metrics, rmse, sampled_ranking_metrics
from mtrec.core.multitask import PAIRS_PER_CHUNK, MultiTaskModel


@dataclass(frozen=True)
class RankingTask:
    """Full-ranking setup: which users, over which candidate items, with what masked/held out.

    ``seen`` and ``relevant`` are (user index, candidate column) pairs.
    """

    users: torch.Tensor
    candidates: torch.Tensor
    seen: tuple[torch.Tensor, torch.Tensor]
    relevant: tuple[torch.Tensor, torch.Tensor]
    # Named subsets of ``users`` (bool masks) whose metrics are also reported, e.g. cold users.
    groups: Mapping[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class SampledTask:
    """Sampled-candidates protocol: each held-out positive ranked against its own sampled
    negatives. ``items[:, 0]`` is the positive, ``items[:, 1:]`` the negatives."""

    users: torch.Tensor  # [n]
    items: torch.Tensor  # [n, 1 + negatives]


def _summary(
    per_user: Mapping[str, torch.Tensor], k: int, groups: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    names = {name: f"{name}@{k}" if name != "mrr" else name for name in per_user}
    out = {names[name]: v.mean().item() for name, v in per_user.items()}
    for group, mask in groups.items():
        if mask.any():  # an empty group has no metrics (not NaNs that poison the aggregates)
            out |= {f"{group}_{names[name]}": v[mask].mean().item() for name, v in per_user.items()}
    return out


@torch.no_grad()
def evaluate_model(
    model: MultiTaskModel, rows: Mapping[str, torch.Tensor], task: RankingTask, k: int, block: int
) -> dict[str, float]:
    """click AUC (all rows), like AUC (clicked rows), rating RMSE/MAE (observed rows), and
    NDCG/HR/Recall@K + MRR over every candidate with seen ones masked."""
    model.eval()
    chunks = [
        model(users, items)
        for users, items in zip(
            rows["user"].split(PAIRS_PER_CHUNK), rows["item"].split(PAIRS_PER_CHUNK), strict=True
        )
    ]
    out = {task: torch.cat([c[task] for c in chunks]) for task in model.spec.score_tasks}
    clicked = rows["click"] > 0
    metrics = {"click_auc": auc(out["click"], rows["click"])}
    if "like" in out:
        metrics["like_auc"] = auc(out["like"][clicked], rows["like"][clicked])
    if "rating" in out:
        metrics["rating_rmse"] = rmse(out["rating"][clicked], rows["rating"][clicked])
        metrics["rating_mae"] = mae(out["rating"][clicked], rows["rating"][clicked])
    # Implicit-feedback data: every click is a like, so like AUC is undefined (not reported).
    metrics = {name: value for name, value in metrics.items() if not math.isnan(value)}
    per_user = ranking_metrics(
        lambda users: model.score_matrix(users, task.candidates),
        task.users,
        task.seen,
        task.relevant,
        len(task.candidates),
        k,
        block,
    )
    return metrics | _summary(per_user, k, task.groups)


def evaluate_ranking(
    score: Callable[[torch.Tensor], torch.Tensor], task: RankingTask, k: int, block: int
) -> dict[str, float]:
    """Full-ranking metrics only; ``score(users [m]) -> [m, n_candidates]``."""
    per_user = ranking_metrics(
        score, task.users, task.seen, task.relevant, len(task.candidates), k, block
    )
    return _summary(per_user, k, task.groups)


def evaluate_popularity(
    popularity: torch.Tensor, task: RankingTask, k: int, block: int
) -> dict[str, float]:
    """The same ranking metrics for a non-personalised baseline (``popularity`` per candidate)."""
    return evaluate_ranking(
        lambda users: popularity.double().expand(len(users), -1), task, k, block
    )


@torch.no_grad()
def evaluate_sampled(
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], task: SampledTask, k: int
) -> dict[str, float]:
    """HR@K, NDCG@K and MRR of each positive among its sampled negatives, prefixed
    ``sampled_``. ``score(users [m], items [m]) -> [m]`` scores row-wise pairs."""
    # Bounded chunks: the item text alone is [pairs, tokens, d] inside the model.
    step = max(1, PAIRS_PER_CHUNK // task.items.shape[1])
    parts = []
    for start in range(0, len(task.users), step):
        items = task.items[start : start + step]
        users = task.users[start : start + step].unsqueeze(1).expand_as(items).reshape(-1)
        parts.append(score(users, items.reshape(-1)).view_as(items).double())
    per_row = sampled_ranking_metrics(torch.cat(parts), k)
    return {
        f"sampled_{name}@{k}" if name != "mrr" else "sampled_mrr": v.mean().item()
        for name, v in per_row.items()
    }


def click_scores(model: MultiTaskModel) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Row-wise click logits of ``model`` (in eval mode) for :func:`evaluate_sampled`."""
    model.eval()
    return lambda users, items: model(users, items)["click"]
