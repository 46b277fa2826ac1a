"""The peer: torch-rechub 0.9.0 trains the same four models on the benchmark rows.

Runs in the benchmark's own venv (benchmarks/.venv, benchmarks/requirements-peer.txt), never
the project's: ``python peer_rechub.py ROWS.npz --batch 4096 --epochs 1`` prints one JSON
object {model: {batch: {epoch_seconds, click_auc, like_auc}}} on stdout. The features are the
ones mtrec's bench model gets: user id, item id, the item's title/tag tokens (mean-pooled) and
its genres (sum-pooled), embedding 16; MLP sizes, dropout, Adam and epochs as models.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch_rechub.basic.features import SequenceFeature, SparseFeature
from torch_rechub.models.multi_task import ESMM, MMOE, PLE, SharedBottom
from torch_rechub.trainers import MTLTrainer
from torch_rechub.utils.data import DataGenerator

D, LR, DROPOUT = 16, 3e-3, 0.1
BOTTOM, TOWER, EXPERTS, N_EXPERTS, LEVELS = [64, 32], [16], [64, 32], 4, 2
CLS = ["classification", "classification"]


def features(raw: np.lib.npyio.NpzFile) -> tuple[list, list]:
    """(user features, item features) as torch-rechub declares them."""
    user = [SparseFeature("user", int(raw["n_users"]), embed_dim=D)]
    item = [
        SparseFeature("item", int(raw["n_items"]), embed_dim=D),
        SequenceFeature("tokens", int(raw["n_tokens"]), D, pooling="mean", padding_idx=0),
        SequenceFeature("genres", int(raw["n_genres"]) + 1, D, pooling="sum", padding_idx=0),
    ]
    return user, item


def columns(raw: np.lib.npyio.NpzFile, split: str) -> dict[str, np.ndarray]:
    """Per-row feature columns, as torch-rechub's DataGenerator takes them."""
    item = raw[f"{split}_item"]
    return {
        "user": raw[f"{split}_user"],
        "item": item,
        "tokens": raw["item_tokens"][item],
        "genres": raw["item_genre_ids"][item],
    }


def build(name: str, user: list, item: list) -> torch.nn.Module:
    """The peer's model ``name`` at the benchmark's sizes."""
    tower = [{"dims": TOWER, "dropout": DROPOUT}] * 2
    experts = {"dims": EXPERTS, "dropout": DROPOUT}
    feats = user + item
    if name == "shared_bottom":
        return SharedBottom(feats, CLS, {"dims": BOTTOM, "dropout": DROPOUT}, tower)
    if name == "mmoe":
        return MMOE(feats, CLS, N_EXPERTS, experts, tower)
    if name == "ple":
        return PLE(feats, CLS, LEVELS, N_EXPERTS, N_EXPERTS, experts, tower)
    if name == "esmm":
        dims = {"dims": [*BOTTOM, *TOWER], "dropout": DROPOUT}
        return ESMM(user, item, dims, dims)
    raise ValueError(f"unknown model {name!r}")


def run(
    raw: np.lib.npyio.NpzFile, name: str, batch: int, epochs: int, seed: int, device: str
) -> dict:
    """Train ``name`` with torch-rechub's own DataGenerator and MTLTrainer; time each epoch."""
    torch.manual_seed(seed)
    user, item = features(raw)
    click, like = raw["train_click"], raw["train_like"]
    # ESMM's outputs are (cvr, ctr, ctcvr); its trainer fits ctr to click and ctcvr to like.
    y = np.stack([like, click, like] if name == "esmm" else [click, like], axis=1)
    train_x, test_x = columns(raw, "train"), columns(raw, "test")
    test_y = np.zeros((len(raw["test_user"]), y.shape[1]), dtype=np.float32)
    loader, _, test_loader = DataGenerator(train_x, y).generate_dataloader(
        x_val=test_x, y_val=test_y, x_test=test_x, y_test=test_y, batch_size=batch
    )
    model = build(name, user, item)
    tasks = [*CLS, "classification"] if name == "esmm" else CLS
    params = {"lr": LR, "weight_decay": 0.0}
    trainer = MTLTrainer(model, tasks, optimizer_params=params, n_epoch=epochs, device=device)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        trainer.train_one_epoch(loader)
        if device == "cuda":  # the epoch ends when its kernels have run
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    pred = np.asarray(trainer.predict(model, test_loader_x(test_loader)))
    c, lk = (1, 2) if name == "esmm" else (0, 1)
    clicked = raw["test_click"] > 0
    return {
        "epoch_seconds": seconds,
        "click_auc": float(roc_auc_score(raw["test_click"], pred[:, c])),
        "like_auc": float(roc_auc_score(raw["test_like"][clicked], pred[clicked, lk])),
    }


def test_loader_x(loader: torch.utils.data.DataLoader):
    """The feature dicts of a labelled loader (``MTLTrainer.predict`` takes x only)."""
    return (x for x, _ in loader)


def main() -> None:
    """Parse arguments, train every requested model and batch size, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rows")
    parser.add_argument("--models", nargs="+", default=["shared_bottom", "mmoe", "ple", "esmm"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu | cuda (fp32: no autocast option)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    raw = np.load(args.rows)
    out: dict = {"torch_rechub": "0.9.0", "torch": torch.__version__, "results": {}}
    # torch-rechub prints losses and tqdm bars: keep stdout for the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        for name in args.models:
            out["results"][name] = {
                str(b): run(raw, name, b, args.epochs, args.seed, args.device) for b in args.batch
            }
    out["loadavg"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
