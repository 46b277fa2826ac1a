"""mtrec's side of the benchmark: the bench-sized model, mtrec's own training epoch, and the
plain-PyTorch floor loop over the same model (runs in the project's venv). On CUDA both train
with the data on the device and bf16 autocast, as the core's ``amp: auto`` does."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mtrec.core.batches import TensorBatches
from mtrec.core.metrics import auc
from mtrec.core.models import build_model
from mtrec.core.multitask import ModelSpec, MultiTaskModel
from mtrec.core.trainer import autocast_dtype, make_optimizer, train_epoch
from mtrec.core.weighting import StaticWeights

# Shared with the peer (peer_rechub.py): embedding 16, bottom [64, 32], towers [16], 4 experts
# of [64, 32], 2 PLE levels, dropout 0.1, Adam lr 3e-3 without weight decay.
EMBEDDING_DIM = 16
BOTTOM, TOWER, EXPERTS, N_EXPERTS, LEVELS, DROPOUT = (64, 32), (16,), (64, 32), 4, 2, 0.1
LR = 3e-3
# The peer trains click and like (like over the entire space) with equal weights.
WEIGHTS = {"click": 1.0, "like": 1.0}
CPU = torch.device("cpu")


@dataclass
class Run:
    """One training run: seconds per epoch and the test AUCs after the last epoch."""

    epoch_seconds: list[float] = field(default_factory=list)
    click_auc: float = float("nan")
    like_auc: float = float("nan")


def load_rows(path: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """Train and test columns (user, item, click, like; rating zeros) and the side tables."""
    raw = np.load(path)
    split = {
        s: {c: torch.from_numpy(raw[f"{s}_{c}"]) for c in ("user", "item", "click", "like")}
        for s in ("train", "test")
    }
    for columns in split.values():
        columns["rating"] = torch.zeros_like(columns["click"])
    side = {k: raw[k] for k in ("item_tokens", "item_genre_ids")}
    side |= {k: int(raw[k]) for k in ("n_users", "n_items", "n_tokens", "n_genres")}
    return split["train"], split["test"], side


def bench_model(
    architecture: str, side: Mapping, seed: int, batch_norm: bool = True
) -> MultiTaskModel:
    """The benchmark-sized model: ids, text bag and genres (the features the peer gets too);
    no numeric side features (zero columns), so both see the same inputs. ``batch_norm``:
    BatchNorm after every hidden layer (mtrec's default, as in the peer's MLPs)."""
    torch.manual_seed(seed)
    spec = ModelSpec(
        n_users=side["n_users"],
        n_items=side["n_items"],
        n_tokens=side["n_tokens"],
        n_genres=side["n_genres"],
        n_user_features=0,
        n_item_features=0,
        max_tokens=side["item_tokens"].shape[1],
        embedding_dim=EMBEDDING_DIM,
        bottom_dims=BOTTOM,
        tower_dims=TOWER,
        dropout=DROPOUT,
        rating_mean=0.0,
        architecture=architecture,
        n_experts=N_EXPERTS,
        expert_dims=EXPERTS,
        levels=LEVELS,
        batch_norm=batch_norm,
        score_tasks=tuple(WEIGHTS),  # the peer's two tasks: no rating head
    )
    model = build_model(spec)
    ids = torch.from_numpy(side["item_genre_ids"])
    genres = torch.zeros(spec.n_items, spec.n_genres + 1).scatter_(1, ids, 1.0)[:, 1:]
    model.set_side_features(
        torch.from_numpy(side["item_tokens"]),
        genres,
        torch.zeros(spec.n_items, 0),
        torch.zeros(spec.n_users, 0),
    )
    return model


@torch.no_grad()
def test_aucs(model: MultiTaskModel, test: Mapping[str, torch.Tensor], run: Run) -> Run:
    """Click AUC on every test row, like AUC on the clicked ones (the core's rank AUC)."""
    model.eval()
    device = model.item_genres.device
    out = {
        k: v.float().cpu()
        for k, v in model(test["user"].to(device), test["item"].to(device)).items()
    }
    clicked = test["click"] > 0
    run.click_auc = auc(out["click"], test["click"])
    run.like_auc = auc(out["like"][clicked], test["like"][clicked])
    return run


def _synchronise(device: torch.device) -> None:
    # CUDA runs asynchronously: an epoch's clock stops when its kernels have finished.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_mtrec(
    architecture: str,
    train: Mapping[str, torch.Tensor],
    test: Mapping[str, torch.Tensor],
    side: Mapping,
    batch_size: int,
    epochs: int,
    seed: int = 0,
    batch_norm: bool = True,
    device: torch.device = CPU,
) -> Run:
    """mtrec's core: TensorBatches + ``train_epoch`` + the optimizer ``fit`` builds."""
    model = bench_model(architecture, side, seed, batch_norm).to(device)
    generator = torch.Generator().manual_seed(seed)
    batches = TensorBatches(train, batch_size, True, generator).to(device)
    weighting = StaticWeights(WEIGHTS).to(device)
    optimizer = make_optimizer(list(model.parameters()), LR, 0.0)
    amp = autocast_dtype("auto", device)
    run = Run()
    for _ in range(epochs):
        _synchronise(device)
        start = time.perf_counter()
        train_epoch(model, batches, optimizer, weighting, amp=amp)
        _synchronise(device)
        run.epoch_seconds.append(time.perf_counter() - start)
    return test_aucs(model, test, run)


def train_floor(
    train: Mapping[str, torch.Tensor],
    test: Mapping[str, torch.Tensor],
    side: Mapping,
    batch_size: int,
    epochs: int,
    seed: int = 0,
    device: torch.device = CPU,
) -> Run:
    """The floor: the shared-bottom model without BatchNorm in the shortest loop plain PyTorch
    allows (one permutation per epoch, slices, click + like BCE, default Adam)."""
    model = bench_model("shared_bottom", side, seed, batch_norm=False).to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    user, item, click, like = (train[c].to(device) for c in ("user", "item", "click", "like"))
    amp = autocast_dtype("auto", device)
    run = Run()
    for _ in range(epochs):
        _synchronise(device)
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(user), generator=generator).to(device)
        u, i, c, lk = user[perm], item[perm], click[perm], like[perm]
        for s in range(0, len(u), batch_size):
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                out = model(u[s : s + batch_size], i[s : s + batch_size])
                loss = F.binary_cross_entropy_with_logits(
                    out["click"], c[s : s + batch_size]
                ) + F.binary_cross_entropy_with_logits(out["like"], lk[s : s + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _synchronise(device)
        run.epoch_seconds.append(time.perf_counter() - start)
    return test_aucs(model, test, run)
