"""Evaluation metrics: AUC, RMSE/MAE and full-ranking top-K metrics over user blocks."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC via the rank-sum (Mann-Whitney U) statistic; ties get average ranks."""
    labels = labels.bool()
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = torch.unique(scores.double(), return_inverse=True, return_counts=True)
    first_rank = torch.cumsum(counts, 0) - counts  # ranks before each distinct value
    avg_rank = first_rank + (counts + 1) / 2.0  # 1-based average rank per distinct value
    rank_sum = avg_rank[inverse][labels].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def rmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Root mean squared error."""
    return torch.sqrt(torch.mean((pred.double() - target.double()) ** 2)).item()


def mae(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute error."""
    return torch.mean(torch.abs(pred.double() - target.double())).item()


def _block_matrix(
    users: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor], n_candidates: int
) -> torch.Tensor:
    """Dense bool [len(users), n_candidates] from (user_row, candidate_col) pairs in the block."""
    rows, cols = pairs
    out = torch.zeros(len(users), n_candidates, dtype=torch.bool)
    out[rows, cols] = True
    return out


def _pairs_in_block(
    pair_users: torch.Tensor, pair_cols: torch.Tensor, block_users: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    # Map global user ids to rows of this block; pairs of other users are dropped.
    if len(pair_users) == 0:  # e.g. nothing seen: only cold users
        return pair_users, pair_cols
    position = torch.full(
        (int(max(pair_users.max(), block_users.max())) + 1,), -1, dtype=torch.long
    )
    position[block_users] = torch.arange(len(block_users))
    rows = position[pair_users]
    keep = rows >= 0
    return rows[keep], pair_cols[keep]


def ranking_metrics(
    score: Callable[[torch.Tensor], torch.Tensor],
    users: torch.Tensor,
    seen: tuple[torch.Tensor, torch.Tensor],
    relevant: tuple[torch.Tensor, torch.Tensor],
    n_candidates: int,
    k: int,
    block: int = 256,
) -> dict[str, torch.Tensor]:
    """Full-ranking NDCG@K, HR@K, Recall@K and MRR per user, seen candidates masked.

    ``score(user_block) -> [len(block), n_candidates]``; ``seen`` and ``relevant`` are
    (user, candidate_column) pairs. Returns one value per user in ``users`` order.
    """
    k = min(k, n_candidates)
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    results: dict[str, list[torch.Tensor]] = {"ndcg": [], "hr": [], "recall": [], "mrr": []}
    for start in range(0, len(users), block):
        block_users = users[start : start + block]
        scores = score(block_users).to("cpu", torch.float64, copy=True)  # masked in place below
        scores[
            _block_matrix(block_users, _pairs_in_block(*seen, block_users), n_candidates)
        ] = -math.inf
        rel = _block_matrix(block_users, _pairs_in_block(*relevant, block_users), n_candidates)
        n_rel = rel.sum(1).double()
        top = torch.topk(scores, k, dim=1).indices  # [block, k]
        hits = rel.gather(1, top).double()  # [block, k]
        ideal = torch.cumsum(discounts, 0)[(n_rel.clamp(max=k) - 1).long().clamp(min=0)]
        results["ndcg"].append((hits * discounts).sum(1) / ideal)
        results["hr"].append((hits.sum(1) > 0).double())
        results["recall"].append(hits.sum(1) / n_rel)
        # MRR over the full list: rank of the best relevant candidate.
        best_rel = (
            torch.where(rel, scores, torch.tensor(-math.inf, dtype=scores.dtype)).max(1).values
        )
        rank = (scores > best_rel.unsqueeze(1)).sum(1) + 1
        results["mrr"].append(1.0 / rank.double())
    return {name: torch.cat(parts) for name, parts in results.items()}


def sampled_ranking_metrics(scores: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """HR@K, NDCG@K and MRR per row of ``scores`` [n, 1 + negatives] whose column 0 is the
    positive. Ties count against the positive (a constant scorer gets no credit)."""
    rank = (scores[:, 1:] >= scores[:, :1]).sum(1)  # 0-based rank of the positive
    hit = rank < k
    return {
        "hr": hit.double(),
        "ndcg": torch.where(hit, 1.0 / torch.log2(rank.double() + 2.0), 0.0),
        "mrr": 1.0 / (rank.double() + 1.0),
    }
