import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, roc_auc_score

from mtrec.core.metrics import auc, mae, ranking_metrics, rmse, sampled_ranking_metrics


def test_auc_matches_sklearn_with_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 20, (500,), generator=gen).float()  # many ties
    labels = torch.rand(500, generator=gen) > 0.6
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()))


def test_auc_is_nan_without_both_classes() -> None:
    assert math.isnan(auc(torch.rand(5), torch.ones(5)))


def test_rmse_and_mae_match_reference() -> None:
    pred, target = torch.rand(100), torch.rand(100)
    assert rmse(pred, target) == pytest.approx(
        float(np.sqrt(np.mean((pred - target).numpy() ** 2)))
    )
    assert mae(pred, target) == pytest.approx(mean_absolute_error(target.numpy(), pred.numpy()))


def _reference(scores, seen, relevant, k):
    """Plain-Python per-user ranking metrics (the definitions, no vectorisation)."""
    out = {"ndcg": [], "hr": [], "recall": [], "mrr": []}
    for u in range(scores.shape[0]):
        ranked = [c for c in np.argsort(-scores[u], kind="stable") if c not in seen[u]]
        rel = relevant[u]
        gains = [1.0 if c in rel else 0.0 for c in ranked[:k]]
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
        idcg = sum(1 / math.log2(i + 2) for i in range(min(k, len(rel))))
        out["ndcg"].append(dcg / idcg)
        out["hr"].append(float(any(gains)))
        out["recall"].append(sum(gains) / len(rel))
        out["mrr"].append(1.0 / (next(i for i, c in enumerate(ranked) if c in rel) + 1))
    return out


def test_ranking_metrics_match_reference_across_blocks() -> None:
    rng = np.random.default_rng(0)
    n_users, n_cand, k = 13, 40, 5
    scores = rng.random((n_users, n_cand))
    seen = [set(rng.choice(n_cand, 6, replace=False)) for _ in range(n_users)]
    relevant = [
        set(rng.choice(sorted(set(range(n_cand)) - s), rng.integers(1, 5), replace=False))
        for s in seen
    ]

    def pairs(sets):
        rows = [(u, c) for u, s in enumerate(sets) for c in s]
        return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])

    users = torch.arange(n_users)
    got = ranking_metrics(
        lambda b: torch.as_tensor(scores)[b],
        users,
        pairs(seen),
        pairs(relevant),
        n_cand,
        k,
        block=4,
    )
    want = _reference(scores, seen, relevant, k)
    for name in want:
        np.testing.assert_allclose(got[name].numpy(), want[name], rtol=1e-9, err_msg=name)


def test_perfect_ranking_scores_one() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.0]])
    relevant = (torch.tensor([0, 0]), torch.tensor([0, 1]))
    seen = (torch.tensor([0]), torch.tensor([3]))
    got = ranking_metrics(lambda b: scores, torch.tensor([0]), seen, relevant, 4, k=2)
    assert got["ndcg"].item() == pytest.approx(1.0)
    assert got["recall"].item() == pytest.approx(1.0)
    assert got["mrr"].item() == pytest.approx(1.0)


def test_seen_items_are_never_ranked() -> None:
    scores = torch.tensor([[5.0, 1.0, 0.0]])  # the seen item scores highest
    got = ranking_metrics(
        lambda b: scores,
        torch.tensor([0]),
        (torch.tensor([0]), torch.tensor([0])),
        (torch.tensor([0]), torch.tensor([1])),
        3,
        k=1,
    )
    assert got["hr"].item() == 1.0


def test_sampled_metrics_match_a_reference_loop() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, size=(50, 21)).astype(float)  # many ties on purpose
    k = 5
    got = sampled_ranking_metrics(torch.as_tensor(scores), k)
    for row, values in enumerate(scores):
        # The positive (column 0) ranks below every negative scoring at least as high.
        rank = sum(1 for v in values[1:] if v >= values[0])
        hit = rank < k
        assert got["hr"][row].item() == float(hit)
        assert got["ndcg"][row].item() == pytest.approx(1 / np.log2(rank + 2) if hit else 0.0)
        assert got["mrr"][row].item() == pytest.approx(1 / (rank + 1))


def test_a_constant_scorer_gets_no_sampled_credit() -> None:
    got = sampled_ranking_metrics(torch.zeros(4, 101), k=10)
    assert got["hr"].sum().item() == 0.0
