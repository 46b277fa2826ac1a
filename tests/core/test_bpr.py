import pytest
import torch

from mtrec.config import BPRConfig, LightGCNConfig
from mtrec.core.bpr import (
    BPRMF,
    NegativeSampler,
    bpr_loss,
    domain_loss,
    fit_bpr,
    fit_lightgcn,
    valid_ndcg,
)
from mtrec.core.evaluation import RankingTask, SampledTask, evaluate_sampled


def _parity_positives(n_users: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each user likes the items of its own parity: learnable by a dot product."""
    users, items = torch.meshgrid(torch.arange(n_users), torch.arange(n_items), indexing="ij")
    keep = (users % 2) == (items % 2)
    return users[keep], items[keep]


def _split() -> tuple[tuple, tuple, RankingTask]:
    users, items = _parity_positives(20, 30)
    perm = torch.randperm(len(users), generator=torch.Generator().manual_seed(0))
    held, train = perm[:20], perm[20:]
    valid = RankingTask(
        users=torch.unique(users[held]),
        candidates=torch.arange(30),
        seen=(users[train], items[train]),
        relevant=(users[held], items[held]),
    )
    return (users[train], items[train]), (users[held], items[held]), valid


@pytest.mark.parametrize(
    ("fit", "cfg"),
    [
        (fit_bpr, BPRConfig(embedding_dim=8, epochs=30, batch_size=64, lr=0.05, patience=30)),
        (
            fit_lightgcn,
            LightGCNConfig(embedding_dim=8, epochs=30, batch_size=64, lr=0.05, patience=30),
        ),
    ],
    ids=["bpr", "lightgcn"],
)
def test_pairwise_baselines_learn_preferences_and_round_trip(fit, cfg, tmp_path) -> None:
    train, held, valid = _split()
    model, info = fit([train], valid, [torch.arange(30)], 20, 30, cfg, 0, 5, 8)
    assert 1 <= info["best_epoch"] <= info["epochs_run"] <= 30
    assert len(info["curve"]) == info["epochs_run"]
    assert info["valid_ndcg@5"] == max(score for _, score in info["curve"])
    # each held-out positive against the 15 items of the other parity
    other = torch.stack([torch.arange(1 - int(i) % 2, 30, 2) for i in held[1]])
    task = SampledTask(held[0], torch.cat([held[1][:, None], other], 1))
    assert evaluate_sampled(model, task, k=1)["sampled_hr@1"] > 0.9
    model.save(tmp_path / "model.pt")
    again = BPRMF.load(tmp_path / "model.pt")
    torch.testing.assert_close(
        again.score_matrix(held[0][:5], torch.arange(30)),
        model.score_matrix(held[0][:5], torch.arange(30)),
    )


def test_negatives_avoid_the_users_training_items() -> None:
    users = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2])
    items = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])  # user 2 has seen the whole pool
    sampler = NegativeSampler(users, items, torch.arange(4))
    draws = sampler.draw(users.repeat(50), torch.Generator().manual_seed(0))
    drawn_by = users.repeat(50)
    assert set(draws[drawn_by == 0].tolist()) == {3}
    assert set(draws[drawn_by == 1].tolist()) == {0, 1, 2}
    assert set(draws[drawn_by == 2].tolist()) <= {0, 1, 2, 3}  # saturated: no endless redraw


def test_early_stopping_waits_for_warmup() -> None:
    train, _, valid = _split()
    cfg = BPRConfig(embedding_dim=8, epochs=12, batch_size=64, lr=1e-9, patience=1)
    _, info = fit_bpr([train], valid, [torch.arange(30)], 20, 30, cfg, 0, 5, 8)
    assert info["epochs_run"] < 12  # a frozen model stops on patience ...
    _, info = fit_bpr(
        [train],
        valid,
        [torch.arange(30)],
        20,
        30,
        cfg.model_copy(update={"warmup_epochs": 12}),
        0,
        5,
        8,
    )
    assert info["epochs_run"] == 12  # ... but not inside the warm-up


def test_a_source_domains_clicks_teach_the_shared_users_the_target_ranks_with() -> None:
    """One target click per user says little about a user's parity; the source domain's
    clicks (items 30-59, same parity rule) say it all, and reach the target through the
    shared user embeddings while each domain keeps its own graph."""
    users, items = _parity_positives(20, 30)
    own = users == items  # user u's one training click is item u: no two users share one
    train, held = (users[own], items[own]), (users[~own], items[~own])
    valid = RankingTask(torch.arange(20), torch.arange(30), train, held)
    source_users, source_items = _parity_positives(20, 60)
    source = (source_users[source_items >= 30], source_items[source_items >= 30])
    cfg = LightGCNConfig(embedding_dim=8, epochs=30, batch_size=64, lr=0.05, patience=30)
    cfg = cfg.model_copy(update={"warmup_epochs": 0})
    pools = [torch.arange(30), torch.arange(30, 60)]
    _, alone = fit_lightgcn([train], valid, pools[:1], 20, 60, cfg, 0, 5, 8)
    joint, both = fit_lightgcn([train, source], valid, pools, 20, 60, cfg, 0, 5, 8)
    assert alone["valid_ndcg@5"] < 0.8 < 0.95 < both["valid_ndcg@5"]
    # weighted near zero, the source's clicks no longer reach the target's ranking
    _, faint = fit_lightgcn([train, source], valid, pools, 20, 60, cfg, 0, 5, 8, 1e-6)
    assert faint["valid_ndcg@5"] < 0.8
    # the exported tables are the target's graph's, the ones validation scored
    assert valid_ndcg(joint, valid, 5, 8) == pytest.approx(both["valid_ndcg@5"])


def test_each_domains_rows_weigh_its_share_times_its_weight() -> None:
    torch.manual_seed(0)
    model = BPRMF(4, 6, 3)
    users, items = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([0, 1, 3, 4, 5])
    negatives, domain = torch.tensor([2, 0, 5, 3, 4]), torch.tensor([0, 0, 1, 1, 1])
    batch = torch.arange(5)
    loss = domain_loss(model, (users, items), negatives, domain, batch, 0.0, [1.0, 0.25])
    u, i, j = model.user.weight[users], model.item.weight[items], model.item.weight[negatives]
    per_row = -torch.log(torch.sigmoid((u * i).sum(-1) - (u * j).sum(-1)))
    expected = 2 / 5 * per_row[:2].mean() + 0.25 * 3 / 5 * per_row[2:].mean()
    torch.testing.assert_close(loss, expected)
    both = [1.0, 1.0]  # unweighted: the plain batch mean
    plain = domain_loss(model, (users, items), negatives, domain, batch, 0.0, both)
    torch.testing.assert_close(plain, bpr_loss(model, users, items, negatives, 0.0))
