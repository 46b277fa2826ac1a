import torch

from mtrec.config import BPRConfig
from mtrec.core.bpr import BPRMF, fit_bpr
from mtrec.core.evaluation import SampledTask, evaluate_sampled


def _parity_positives(n_users: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each user likes the items of its own parity: learnable by a dot product."""
    users, items = torch.meshgrid(torch.arange(n_users), torch.arange(n_items), indexing="ij")
    keep = (users % 2) == (items % 2)
    return users[keep], items[keep]


def test_bpr_learns_preferences_and_round_trips(tmp_path) -> None:
    users, items = _parity_positives(20, 30)
    perm = torch.randperm(len(users), generator=torch.Generator().manual_seed(0))
    held, train = perm[:20], perm[20:]
    cfg = BPRConfig(embedding_dim=8, epochs=30, batch_size=64, lr=0.05, patience=30)
    model, info = fit_bpr(
        (users[train], items[train]),
        (users[held], items[held]),
        torch.arange(30),
        20,
        30,
        cfg,
        seed=0,
    )
    assert 1 <= info["best_epoch"] <= info["epochs_run"] <= 30
    # each held-out positive against the 15 items of the other parity
    other = torch.stack([torch.arange(1 - int(i) % 2, 30, 2) for i in items[held]])
    task = SampledTask(users[held], torch.cat([items[held, None], other], 1))
    assert evaluate_sampled(model, task, k=1)["sampled_hr@1"] > 0.9
    model.save(tmp_path / "bpr.pt")
    again = BPRMF.load(tmp_path / "bpr.pt")
    torch.testing.assert_close(
        again.score_matrix(users[:5], torch.arange(30)),
        model.score_matrix(users[:5], torch.arange(30)),
    )
