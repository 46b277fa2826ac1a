"""RecBole 1.2.1 on the bench's exported split, run in RecBole's own venv (never the project's):
``python peer_recbole.py --split DIR --model BPR --seed 0 [--candidates FILE]``.

DIR holds ``train.tsv``, ``valid.tsv``, ``test.tsv`` (``user \\t item``, header, the target's
positives exactly as mtrec trains and scores them). They become RecBole atomic files in a
temporary folder (``benchmark_filename``: RecBole keeps the split as given), the model trains
with early stopping on valid NDCG@10 (full ranking), and one JSON object goes to stdout: test
metrics (full ranking, or each test positive against its fixed candidates from FILE), training
seconds and the per-epoch validation curve.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

# RecBole reloads its own checkpoint (a pickled Config): torch >= 2.6 refuses that by default.
# Set before torch is imported, in this process only.
os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"

import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.general_recommender import BPR, LightGCN, Pop
from recbole.trainer import Trainer
from recbole.utils import init_seed

MODELS = {"BPR": BPR, "LightGCN": LightGCN, "Pop": Pop}
K = 10


def write_atomic(split: Path, folder: Path) -> dict[str, list[list[str]]]:
    """``bench.{train,valid,test}.inter`` in ``folder``; returns the rows read per split."""
    rows = {}
    for name in ("train", "valid", "test"):
        lines = (split / f"{name}.tsv").read_text().splitlines()[1:]
        rows[name] = [line.split("\t") for line in lines]
        body = "".join(f"{u}\t{i}\n" for u, i in rows[name])
        (folder / f"bench.{name}.inter").write_text("user_id:token\titem_id:token\n" + body)
    return rows


def settings(folder: Path, model: str, seed: int, args: argparse.Namespace) -> dict:
    """RecBole's config: the protocol of the split's published figures
    (data/ml-latest-small/recbole-split-seed2026/README.md: embedding 64, batch 4096, 1 uniform
    negative, Adam, early stopping (10) on valid NDCG@10, full ranking)."""
    return {
        "data_path": str(folder.parent),
        "checkpoint_dir": str(folder / "saved"),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["NDCG", "Recall", "Hit"],
        "topk": [K],
        "valid_metric": f"NDCG@{K}",
        "metric_decimal_place": 6,
        "embedding_size": 64,
        "train_batch_size": 4096,
        "eval_batch_size": 4096 * 16,
        "learning_rate": args.lr,
        "epochs": args.epochs,
        "stopping_step": 10,
        # Pop counts items per batch (RecBole #1844): no negatives, exact counts set below.
        "train_neg_sample_args": None
        if model == "Pop"
        else {"distribution": "uniform", "sample_num": 1},
        "seed": seed,
        "reproducibility": True,
        "device": "cpu",
        "use_gpu": False,
        "show_progress": False,
        "state": "ERROR",
        "log_wandb": False,
    }


def fixed_candidate_metrics(model, dataset, candidates: Path) -> dict[str, float]:
    """HR@10 / NDCG@10 of each test positive against its fixed negatives, ranked from the
    model's full score vector; ties count as the expectation under a random order."""
    lines = [line.split("\t") for line in candidates.read_text().splitlines()[1:]]
    users = dataset.token2id("user_id", [line[0] for line in lines])
    vocabulary = dataset.field2token_id["item_id"]
    hr = ndcg = 0.0
    unknown = 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(lines), 256):
            block = lines[start : start + 256]
            user_ids = torch.as_tensor(users[start : start + 256])
            scores = model.full_sort_predict({"user_id": user_ids}).view(len(block), -1)
            for row, line in zip(scores, block, strict=True):
                ids = [vocabulary.get(item, -1) for item in line[1:]]
                unknown += sum(i < 0 for i in ids)
                # Items RecBole never saw (no row in any split) score below every known one.
                values = torch.tensor([row[i].item() if i >= 0 else -math.inf for i in ids])
                above = int((values[1:] > values[0]).sum())
                ties = int((values[1:] == values[0]).sum())
                positions = range(above, above + ties + 1)
                hr += sum(r < K for r in positions) / len(positions)
                ndcg += sum(1 / math.log2(r + 2) for r in positions if r < K) / len(positions)
    n = len(lines)
    return {f"sampled_hr@{K}": hr / n, f"sampled_ndcg@{K}": ndcg / n, "unknown_items": unknown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--candidates", type=Path)
    args = parser.parse_args()
    # One thread: two OpenMP threads on two shared cores ran BPR 19x slower on this kind of machine.
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bench"
        folder.mkdir()
        rows = write_atomic(args.split, folder)
        config = Config(
            model=args.model,
            dataset="bench",
            config_dict=settings(folder, args.model, args.seed, args),
        )
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        model = MODELS[args.model](config, train_data.dataset).to(config["device"])
        trainer = Trainer(config, model)
        curve, clock = [], {"train": 0.0}
        train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

        def timed_train(*a, **kw):
            start = time.perf_counter()
            out = train_epoch(*a, **kw)
            clock["train"] += time.perf_counter() - start
            return out

        def recorded_valid(*a, **kw):
            score, result = valid_epoch(*a, **kw)
            curve.append([round(clock["train"], 3), float(score)])
            return score, result

        trainer._train_epoch, trainer._valid_epoch = timed_train, recorded_valid
        start = time.perf_counter()
        if args.model == "Pop":
            counts = torch.bincount(
                torch.as_tensor(dataset.token2id("item_id", [i for _, i in rows["train"]])),
                minlength=dataset.item_num,
            )
            model.item_cnt.copy_(counts.view_as(model.item_cnt).to(model.item_cnt.dtype))
            model.max_cnt = model.item_cnt.max()
            best_valid = trainer.evaluate(valid_data, load_best_model=False)[f"ndcg@{K}"]
            test = trainer.evaluate(test_data, load_best_model=False)
        else:
            best_valid, _ = trainer.fit(train_data, valid_data, saved=True)
            test = trainer.evaluate(test_data, load_best_model=True)
        wall = time.perf_counter() - start
        metrics = {
            f"ndcg@{K}": float(test[f"ndcg@{K}"]),
            f"hr@{K}": float(test[f"hit@{K}"]),
            f"recall@{K}": float(test[f"recall@{K}"]),
        }
        if args.candidates:
            metrics |= fixed_candidate_metrics(model, dataset, args.candidates)
    json.dump(
        {
            "metrics": metrics,
            f"valid_ndcg@{K}": float(best_valid),
            "epochs_run": len(curve),
            "train_seconds": round(clock["train"], 3),
            "wall_seconds": round(wall, 3),
            "curve": curve,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
