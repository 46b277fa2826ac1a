"""Per-group and sampled evaluation on a tiny model."""

import torch

from mtrec.core.evaluation import (
    RankingTask,
    SampledTask,
    click_scores,
    evaluate_model,
    evaluate_popularity,
    evaluate_sampled,
)

from .helpers import learnable_rows, tiny_model


def _task(groups: dict) -> RankingTask:
    return RankingTask(
        users=torch.tensor([1, 2, 3]),
        candidates=torch.arange(1, 11),
        seen=(torch.tensor([1]), torch.tensor([0])),
        relevant=(torch.tensor([1, 2, 3]), torch.tensor([3, 4, 5])),
        groups=groups,
    )


def test_group_metrics_average_over_the_group_and_empty_groups_are_left_out() -> None:
    popularity = torch.arange(10, 0, -1).double()  # candidate column 0 most popular
    groups = {"cold": torch.tensor([False, True, True]), "none": torch.zeros(3, dtype=torch.bool)}
    metrics = evaluate_popularity(popularity, _task(groups), k=5, block=2)
    per_user = [evaluate_popularity(popularity, _one(u), k=5, block=2) for u in range(3)]
    assert metrics["cold_ndcg@5"] == (per_user[1]["ndcg@5"] + per_user[2]["ndcg@5"]) / 2
    assert metrics["ndcg@5"] == sum(m["ndcg@5"] for m in per_user) / 3
    assert not any(name.startswith("none_") for name in metrics)


def _one(index: int) -> RankingTask:
    task = _task({})
    user = task.users[index]
    keep_seen = task.seen[0] == user
    keep_rel = task.relevant[0] == user
    return RankingTask(
        users=user.view(1),
        candidates=task.candidates,
        seen=(task.seen[0][keep_seen], task.seen[1][keep_seen]),
        relevant=(task.relevant[0][keep_rel], task.relevant[1][keep_rel]),
    )


def test_sampled_protocol_scores_the_model_on_its_candidates() -> None:
    model = tiny_model()
    task = SampledTask(users=torch.tensor([1, 2]), items=torch.tensor([[3, 4, 5], [6, 7, 8]]))
    metrics = evaluate_sampled(click_scores(model), task, k=1)
    logits = model(torch.tensor([1, 1, 1, 2, 2, 2]), task.items.reshape(-1))["click"].view(2, 3)
    hits = (logits[:, 0] > logits[:, 1:].max(1).values).double().mean().item()
    assert metrics["sampled_hr@1"] == hits
    assert set(metrics) == {"sampled_hr@1", "sampled_ndcg@1", "sampled_mrr"}


def test_model_and_popularity_report_the_same_ranking_keys() -> None:
    task = _task({"cold": torch.tensor([True, False, False])})
    model_keys = set(evaluate_model(tiny_model(), learnable_rows(100), task, 5, 2))
    pop_keys = set(evaluate_popularity(torch.ones(10), task, 5, 2))
    assert pop_keys <= model_keys and "cold_ndcg@5" in pop_keys
