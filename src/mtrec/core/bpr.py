"""Pairwise baselines trained with the BPR loss (Rendle et al., 2009): matrix factorisation
(:class:`BPRMF`) and LightGCN (:mod:`mtrec.core.graph`), on the target's positives alone or
with a source domain's beside them (shared users, one graph per domain), both scored like
every model (full ranking and sampled candidates).

Training follows RecBole's general-recommendation recipe: one uniform negative per positive
drawn afresh every epoch among the items the user has not trained on, and the epoch with the
best validation NDCG@K over a full ranking is kept (early stopping on it)."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from mtrec.core.evaluation import RankingTask, evaluate_ranking
from mtrec.core.graph import LightGCN, normalized_adjacency
from mtrec.core.trainer import make_optimizer

log = logging.getLogger(__name__)

Positives = tuple[torch.Tensor, torch.Tensor]  # (users, items) of one domain's training clicks


class PairwiseSettings(Protocol):
    """What the pairwise trainer reads (``mtrec.config.BPRConfig`` / ``LightGCNConfig``)."""

    embedding_dim: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    reg_weight: float
    patience: int
    warmup_epochs: int


class LightGCNSettings(PairwiseSettings, Protocol):
    """LightGCN's extra knob (``mtrec.config.LightGCNConfig``)."""

    layers: int


class TableModel(Protocol):
    """A model whose scores are dot products of a user and an item table."""

    def tables(self, domain: int = 0) -> tuple[torch.Tensor, torch.Tensor]: ...

    def ego(self) -> tuple[torch.Tensor, torch.Tensor]: ...


class BPRMF(nn.Module):
    """Dot product of a user and an item embedding (also the exported form of LightGCN)."""

    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        # Xavier-normal, as RecBole's BPR: std ~ 0.01 for large tables. A larger start (0.1)
        # scored HR@10 .13 against .20 on the Amazon Phone candidates, below popularity.
        for emb in (self.user, self.item):
            nn.init.xavier_normal_(emb.weight)

    @classmethod
    def from_tables(cls, users: torch.Tensor, items: torch.Tensor) -> BPRMF:
        """An MF model scoring with fixed tables (e.g. LightGCN's propagated embeddings)."""
        model = cls(len(users), len(items), users.shape[1])
        with torch.no_grad():
            model.user.weight.copy_(users)
            model.item.weight.copy_(items)
        return model.eval()

    def tables(self, domain: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The (user, item) embedding tables, the same in every domain."""
        return self.user.weight, self.item.weight

    def ego(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The tables the L2 penalty acts on (the same for MF)."""
        return self.tables()

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Row-wise scores: [n] users, [n] items -> [n]."""
        return (self.user(users) * self.item(items)).sum(-1)

    @torch.no_grad()
    def score_matrix(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Every (user, item) pair: [n_users, n_items]."""
        return self.user(users) @ self.item(items).T

    def save(self, path: str | Path) -> None:
        """Checkpoint with the table sizes needed to rebuild it."""
        n_users, dim = self.user.weight.shape
        shape = {"n_users": n_users, "n_items": self.item.weight.shape[0], "dim": dim}
        torch.save({"shape": shape, "state": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | Path) -> BPRMF:
        """Rebuild a model written by :meth:`save`."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(**checkpoint["shape"])
        model.load_state_dict(checkpoint["state"])
        return model.eval()


class NegativeSampler:
    """Uniform items of ``pool`` the user has no training positive with (RecBole's sampler:
    a drawn seen item is redrawn), for users who have not trained on every pool item."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, pool: torch.Tensor) -> None:
        self.pool = pool
        self.n_items = int(max(items.max(), pool.max())) + 1
        self.seen = torch.unique(users * self.n_items + items)  # sorted keys
        in_pool = torch.isin(items, pool)
        per_user = torch.bincount(
            torch.unique(users[in_pool] * self.n_items + items[in_pool]) // self.n_items
        )
        # Users with every pool item seen would be redrawn forever: they keep their draw.
        self.saturated = torch.zeros(int(users.max()) + 1, dtype=torch.bool)
        self.saturated[: len(per_user)] = per_user >= len(pool)

    def _is_seen(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.n_items + items
        at = torch.searchsorted(self.seen, keys).clamp(max=len(self.seen) - 1)
        return self.seen[at] == keys

    def draw(self, users: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One negative item per entry of ``users``."""
        negatives = self.pool[torch.randint(len(self.pool), (len(users),), generator=gen)]
        redraw = self._is_seen(users, negatives) & ~self.saturated[users]
        while redraw.any():
            fresh = self.pool[torch.randint(len(self.pool), (int(redraw.sum()),), generator=gen)]
            negatives[redraw] = fresh
            redraw[redraw.clone()] = self._is_seen(users[redraw], fresh)
        return negatives


def bpr_loss(
    model: TableModel,
    users: torch.Tensor,
    items: torch.Tensor,
    negatives: torch.Tensor,
    reg_weight: float,
    domain: int = 0,
) -> torch.Tensor:
    """-log sigmoid(s(u, i) - s(u, j)) averaged over the batch, plus ``reg_weight`` x the batch's
    mean squared L2 norm of the layer-0 embeddings of u, i and j, halved (as in LightGCN);
    scored with ``domain``'s tables."""
    user_table, item_table = model.tables(domain)
    u = user_table[users]
    diff = (u * item_table[items]).sum(-1) - (u * item_table[negatives]).sum(-1)
    loss = -F.logsigmoid(diff).mean()
    if reg_weight:
        ego_users, ego_items = model.ego()
        norms = (
            ego_users[users].pow(2).sum()
            + ego_items[items].pow(2).sum()
            + ego_items[negatives].pow(2).sum()
        )
        loss = loss + reg_weight * norms / (2 * len(users))
    return loss


def valid_ndcg(model: TableModel, valid: RankingTask, k: int, block: int) -> float:
    """NDCG@K of ``model`` on the full ranking of ``valid``."""
    with torch.no_grad():
        user_table, item_table = model.tables()
        candidates = item_table[valid.candidates]
        metrics = evaluate_ranking(lambda users: user_table[users] @ candidates.T, valid, k, block)
    return metrics[f"ndcg@{k}"]


def domain_loss(
    model: TableModel,
    rows: Positives,
    negatives: torch.Tensor,
    domain: torch.Tensor,
    batch: torch.Tensor,
    reg_weight: float,
    weights: Sequence[float],
) -> torch.Tensor:
    """The batch's mean BPR loss, each row scored with its own domain's tables and weighted
    by its domain's entry of ``weights``."""
    users, items = rows
    loss = torch.zeros(())
    for d in torch.unique(domain[batch]).tolist():
        mine = batch[domain[batch] == d]
        share = weights[d] * len(mine) / len(batch)
        loss = loss + share * bpr_loss(
            model, users[mine], items[mine], negatives[mine], reg_weight, d
        )
    return loss


def fit_pairwise(
    model: BPRMF | LightGCN,
    train: Sequence[Positives],
    valid: RankingTask,
    pools: Sequence[torch.Tensor],
    cfg: PairwiseSettings,
    seed: int,
    k: int,
    block: int,
    source_weight: float = 1.0,
) -> tuple[BPRMF, dict]:
    """Train ``model`` (MF or LightGCN) with BPR on the (user, item) positives of each domain
    in ``train``, each positive's negative drawn from its domain's item pool in ``pools``. The
    first domain is the target: its valid NDCG@K picks the epoch kept, and its tables are
    exported; the other domains' rows weigh ``source_weight`` each in the loss. Stops after
    ``cfg.patience`` epochs without gain but not before ``cfg.warmup_epochs`` (a fresh model
    may sit on a popularity ranking a while). Returns the kept model as fixed tables and the
    run's record, the per-epoch validation curve (seconds of training so far, NDCG) included."""
    gen = torch.Generator().manual_seed(seed)
    samplers = [NegativeSampler(*pair, pool) for pair, pool in zip(train, pools, strict=True)]
    optimizer = make_optimizer(list(model.parameters()), cfg.lr, cfg.weight_decay)
    rows = (torch.cat([u for u, _ in train]), torch.cat([i for _, i in train]))
    domain = torch.cat([torch.full((len(u),), d) for d, (u, _) in enumerate(train)])
    weights = [1.0] + [source_weight] * (len(train) - 1)
    best, best_state, best_epoch = -1.0, copy.deepcopy(model.state_dict()), 0
    curve, seconds = [], 0.0
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        negatives = torch.cat([s.draw(u, gen) for s, (u, _) in zip(samplers, train, strict=True)])
        for batch in torch.randperm(len(domain), generator=gen).split(cfg.batch_size):
            loss = domain_loss(model, rows, negatives, domain, batch, cfg.reg_weight, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        seconds += time.perf_counter() - start
        score = valid_ndcg(model, valid, k, block)
        curve.append([round(seconds, 3), score])
        if score > best:
            best, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= cfg.patience and epoch >= cfg.warmup_epochs:
            break
    model.load_state_dict(best_state)
    info = {
        "best_epoch": best_epoch,
        "epochs_run": epoch,
        f"valid_ndcg@{k}": best,
        "train_seconds": round(seconds, 3),
        "curve": curve,
    }
    log.info(
        "%s on %d domain(s) seed %d: best epoch %d of %d, valid ndcg@%d %.4f",
        type(model).__name__,
        len(train),
        seed,
        best_epoch,
        epoch,
        k,
        best,
    )
    with torch.no_grad():
        return BPRMF.from_tables(*(t.detach().clone() for t in model.tables())), info


def fit_bpr(
    train: Sequence[Positives],
    valid: RankingTask,
    pools: Sequence[torch.Tensor],
    n_users: int,
    n_items: int,
    cfg: PairwiseSettings,
    seed: int,
    k: int,
    block: int,
) -> tuple[BPRMF, dict]:
    """BPR matrix factorisation (:func:`fit_pairwise` on a fresh :class:`BPRMF`)."""
    torch.manual_seed(seed)
    model = BPRMF(n_users, n_items, cfg.embedding_dim)
    return fit_pairwise(model, train, valid, pools, cfg, seed, k, block)


def fit_lightgcn(
    train: Sequence[Positives],
    valid: RankingTask,
    pools: Sequence[torch.Tensor],
    n_users: int,
    n_items: int,
    cfg: LightGCNSettings,
    seed: int,
    k: int,
    block: int,
    source_weight: float = 1.0,
) -> tuple[BPRMF, dict]:
    """LightGCN over one graph per domain of the ``train`` positives, exported as the target's
    (the first domain's) propagated tables; ``source_weight`` weighs the source rows' loss."""
    torch.manual_seed(seed)
    adjacencies = [normalized_adjacency(*pairs, n_users, n_items) for pairs in train]
    model = LightGCN(adjacencies, n_users, n_items, cfg.embedding_dim, cfg.layers)
    return fit_pairwise(model, train, valid, pools, cfg, seed, k, block, source_weight)
