"""Seconds for one full ranking (``ranking_metrics`` over ``score_matrix``) at a dataset's
shape, with an untrained shared-bottom model (the speed does not depend on the weights). The
defaults are the Amazon Phone target of ``configs/amazon-sport-phone.yaml``: 3,999 users,
13,655 items, embedding 64, the dot product on, a click head only (docs/results.md quotes them).

    python scripts/time_full_ranking.py [--users 3999] [--items 13655] [--dim 64] [--repeats 2]

To time an older tree: ``git worktree add /tmp/old <commit>`` and run the script with
``PYTHONPATH=/tmp/old/src``.
"""

from __future__ import annotations

import argparse
import time

import torch

from mtrec.core.metrics import ranking_metrics
from mtrec.core.models import build_model
from mtrec.core.multitask import ModelSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3999)
    parser.add_argument("--items", type=int, default=13655)
    parser.add_argument("--dim", type=int, default=64, help="model.embedding_dim")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--block", type=int, default=256, help="eval.user_block")
    args = parser.parse_args()
    n_users, n_items = args.users, args.items
    spec = ModelSpec(
        n_users=n_users + 1,
        n_items=n_items + 1,
        n_tokens=2,
        n_genres=0,
        n_user_features=0,
        n_item_features=0,
        max_tokens=1,
        embedding_dim=args.dim,
        bottom_dims=(64, 32),
        tower_dims=(16,),
        dropout=0.1,
        rating_mean=0.0,
        architecture="shared_bottom",
        n_experts=4,
        expert_dims=(64, 32),
        levels=2,
        dot_product=True,
        score_tasks=("click",),
    )
    torch.manual_seed(0)
    model = build_model(spec)
    model.set_side_features(
        torch.zeros(n_items + 1, 1, dtype=torch.long),
        torch.zeros(n_items + 1, 0),
        torch.zeros(n_items + 1, 0),
        torch.zeros(n_users + 1, 0),
    )
    model.eval()
    users, items = torch.arange(1, n_users + 1), torch.arange(1, n_items + 1)
    gen = torch.Generator().manual_seed(0)
    n_seen = 10 * n_users
    seen = (
        torch.randint(1, n_users + 1, (n_seen,), generator=gen),
        torch.randint(0, n_items, (n_seen,), generator=gen),
    )
    relevant = (users, torch.randint(0, n_items, (n_users,), generator=gen))
    for _ in range(args.repeats):
        start = time.perf_counter()
        ranking_metrics(
            lambda u: model.score_matrix(u, items), users, seen, relevant, n_items, 10, args.block
        )
        print(
            f"{n_users} users x {n_items} items, {torch.get_num_threads()} threads: "
            f"{time.perf_counter() - start:.2f} s"
        )


if __name__ == "__main__":
    main()
