"""Validation-only check of a setting on a sampled protocol (docs/models.md, ninth round):
train one baseline of the ``baselines`` stage or one transfer strategy that needs no
pretrained model (``scratch``, ``joint``, ...), then rank each of the target's valid
positives against negatives drawn without replacement among the target's training items,
never an item the user took in train or valid (``data.tensors.sampled_task``, as the
evaluate stage draws them; the Amazon release's fixed candidates hold none either). The test
split is not read.

Run it in a project or run workspace whose ``preprocess`` output exists::

    python scripts/valid_sampled_hr.py lightgcn '{"baselines": {"lightgcn": {"layers": 3}}}'
    python scripts/valid_sampled_hr.py joint --seed 1

The JSON argument overrides params.yaml (``lightgcn_joint`` trains with ``baselines.
lightgcn``'s settings). One JSON line per run: sampled HR@K, and the baselines' full-ranking
valid NDCG@K they early-stopped on, epochs and seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import get_args

import numpy as np
import torch

from mtrec.config import Strategy, load_params
from mtrec.core.evaluation import click_scores, evaluate_sampled
from mtrec.data.splitting import TARGET, TRAIN, VALID
from mtrec.data.tensors import sampled_task
from mtrec.stages.baselines import NAMES, train_baseline
from mtrec.stages.modeling import load_processed
from mtrec.stages.transfer import target_rows, train_strategy

CPU = torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=[*NAMES, *get_args(Strategy)])
    parser.add_argument("settings", nargs="?", default="{}", help="JSON overrides")
    parser.add_argument("--seed", type=int, default=0, help="the training seed")
    parser.add_argument("--negatives", type=int, default=999)
    parser.add_argument("--negative-seed", type=int, default=7)
    args = parser.parse_args()

    torch.set_num_threads(1)  # as the stage's workers and the bench train
    overrides = json.loads(args.settings)
    params = load_params(overrides=overrides)
    data = load_processed(params)
    start = time.perf_counter()
    if args.model in NAMES:
        model, info = train_baseline(params, data, args.model, args.seed)
        score = model
    else:
        rows = target_rows(params, data)
        model, info = train_strategy(params, data, args.model, args.seed, rows, CPU)
        score = click_scores(model)
    seconds = time.perf_counter() - start

    train, valid = data.positives(TARGET, TRAIN), data.positives(TARGET, VALID)
    pool = np.unique(train["item_idx"].to_numpy(np.int64))
    rng = np.random.default_rng(args.negative_seed)
    task = sampled_task(train, valid, pool, args.negatives, rng, "--negatives")
    model.eval()
    with torch.no_grad():
        metrics = evaluate_sampled(score, task, params.eval.k)
    summary = {
        k: round(v, 4) for k, v in info.items() if isinstance(v, int | float) and "second" not in k
    }
    print(
        json.dumps(
            {"model": args.model, "overrides": overrides, "seed": args.seed}
            | {k: round(v, 4) for k, v in metrics.items()}
            | summary
            | {"train_seconds": round(seconds)}
        )
    )


if __name__ == "__main__":
    main()
