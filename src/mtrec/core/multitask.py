"""What every multi-task architecture shares: the spec, the pair encoder, the task outputs'
contract, full-ranking scores and self-describing checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mtrec.core.encoder import PairEncoder
from mtrec.core.layers import BatchNorm
from mtrec.core.pair_grid import PairGrid

SCORE_TASKS = ("click", "like", "rating")
# Encoder parts that carry knowledge across domains (item ids and the genre head do not).
# The LM projection maps text embeddings, which every domain has, so it transfers too, and so
# do the sentence encoder's fine-tuned top layers (lm_top) that produce them.
SHARED_ENCODER = (
    "user_embedding",
    "user_side",
    "text",
    "genre",
    "item_side",
    "history",
    "lm",
    "lm_top",
)
# Pairs scored at once by score_matrix: bounds memory for the expert models (PLE runs 16
# experts over every pair) whatever the catalogue size.
PAIRS_PER_CHUNK = 1 << 16


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model; saved beside the weights."""

    n_users: int
    n_items: int
    n_tokens: int
    n_genres: int
    n_user_features: int
    n_item_features: int
    max_tokens: int
    embedding_dim: int
    bottom_dims: tuple[int, ...]
    tower_dims: tuple[int, ...]
    dropout: float
    rating_mean: float
    architecture: str = "shared_bottom"
    n_experts: int = 4
    expert_dims: tuple[int, ...] = (64,)
    levels: int = 2
    # BatchNorm after every hidden linear layer of the MLPs. Off here, on in params.yaml: a
    # checkpoint saved before the field existed has none.
    batch_norm: bool = False
    # Keep the genre and item-feature slots of the pair even where the data has no genres or
    # no item features (the layout of checkpoints saved before such slots were dropped).
    constant_slots: bool = False
    text_encoder: str = "bag"
    text_kernel: int = 3
    history_length: int = 0  # 0 = no user-history encoder
    history_heads: int = 2
    history_layers: int = 1
    item_encoder: str = "id"  # id | lm (projected frozen sentence embeddings)
    # Add a retrieval score, user vector · item tower, to the click logit (matrix factorisation
    # beside the MLP). The item tower is the item-id vector (id) or a linear projection of the
    # whole item vector (content: text and genres, which new-domain items have too); the score
    # is their dot product or cosine; click_mlp False drops the architecture's click logit
    # from the click score, leaving a two-tower model.
    dot_product: bool = False
    item_tower: str = "id"
    similarity: str = "dot"
    click_mlp: bool = True
    # LightGCN propagation of the id embeddings over the training graph (0 = none).
    graph_layers: int = 0
    lm_dim: int = 0  # sentence-embedding width (lm only)
    # lm with lm_layers > 0: the sentence encoder's top lm_layers BERT layers (lm_heads heads,
    # feed-forward width lm_ffn_dim) train over cached token states [n_items, lm_seq_len, lm_dim]
    # (core/lm_top.py); 0 = the frozen embedding.
    lm_layers: int = 0
    lm_seq_len: int = 0
    lm_heads: int = 0
    lm_ffn_dim: int = 0
    # Tasks that get a head: a task weighted 0 wherever the model trains costs nothing. Click
    # ranks, so it is always there.
    score_tasks: tuple[str, ...] = SCORE_TASKS

    def __post_init__(self) -> None:
        unknown = set(self.score_tasks) - set(SCORE_TASKS)
        if unknown or "click" not in self.score_tasks:
            raise ValueError(
                f"score_tasks {self.score_tasks}: must include 'click', from {SCORE_TASKS}"
            )
        if self.item_tower not in ("id", "content") or self.similarity not in ("dot", "cosine"):
            raise ValueError(
                f"item_tower {self.item_tower!r} / similarity {self.similarity!r}: known "
                "id, content / dot, cosine"
            )
        if not self.dot_product and (
            self.item_tower != "id" or self.similarity != "dot" or not self.click_mlp
        ):
            raise ValueError("item_tower, similarity and click_mlp shape dot_product's score")


class MultiTaskModel(nn.Module):
    """Base class: subclasses map the pair vector to one logit per score task."""

    # Submodules shared by all tasks above the encoder (what feature transfer keeps frozen).
    shared_modules: tuple[str, ...] = ()

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = PairEncoder(spec)
        d = spec.embedding_dim
        # Only built when asked for: seeded initialisation of every other model is unchanged.
        self.item_tower = (
            nn.Linear(self.encoder.out_dim - d, d, bias=False)
            if spec.item_tower == "content"
            else None
        )

    def task_logits(
        self, pairs: torch.Tensor, tasks: tuple[str, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        """[n, encoder.out_dim] -> {task: [n]} for ``tasks`` (default ``spec.score_tasks``;
        rating before its mean), computing only what those tasks need."""
        raise NotImplementedError

    @property
    def item_genres(self) -> torch.Tensor:
        """Genre multi-hot per item (the category task's labels)."""
        return self.encoder.item_genres

    def set_side_features(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> None:
        """See :meth:`PairEncoder.set_side_features`."""
        self.encoder.set_side_features(*args, **kwargs)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-row outputs: click/like logits, rating, category logits [batch, n_genres]."""
        pairs, text = self.encoder(users, items)
        out = self.task_logits(pairs)
        if self.spec.dot_product:
            d = self.spec.embedding_dim
            score = self.retrieval(pairs[:, :d], pairs[:, d:], grid=False)
            out["click"] = out["click"] + score if self.spec.click_mlp else score
        if "rating" in out:
            out["rating"] = out["rating"] + self.spec.rating_mean
        out["category"] = self.encoder.category(text)
        return out

    def retrieval(self, user_vec: torch.Tensor, item_vec: torch.Tensor, grid: bool) -> torch.Tensor:
        """The two-tower score of user vectors [U, d] and item vectors [I, out_dim - d]: every
        pair [U, I] (``grid``) or row-wise pairs [U] (U == I)."""
        d = self.spec.embedding_dim
        tower = self.item_tower(item_vec) if self.item_tower is not None else item_vec[:, :d]
        if self.spec.similarity == "cosine":
            user_vec, tower = F.normalize(user_vec, dim=-1), F.normalize(tower, dim=-1)
        return user_vec @ tower.T if grid else (user_vec * tower).sum(-1)

    def click_grid(self, user_vec: torch.Tensor, item_vec: torch.Tensor) -> torch.Tensor:
        """Click logits of every pair of user vectors [U, d] and item vectors
        [I, out_dim - d] (the encoder's outputs): [U, I], differentiable."""
        return self._click(PairGrid(user_vec, item_vec), user_vec, item_vec, grid=True)

    @torch.no_grad()
    def click_rows(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Row-wise click logits [n], as ``forward``'s (each user's history read without the
        row's item), with every distinct item encoded once and the click head alone (the
        sampled protocol repeats items across rows)."""
        unique, inverse = torch.unique(items, return_inverse=True)
        item_vec = self.encoder.items(unique)[0][inverse]
        user_vec = self.encoder.users(users, exclude=items)
        pairs = torch.cat([user_vec, item_vec], dim=-1)
        return self._click(pairs, user_vec, item_vec, grid=False)

    def _click(
        self,
        pairs: torch.Tensor | PairGrid,
        user_vec: torch.Tensor,
        item_vec: torch.Tensor,
        grid: bool,
    ) -> torch.Tensor:
        scores = None
        if self.spec.click_mlp:
            # Click alone ranks: the other heads (towers, gates, ESMM's CVR tower) are skipped.
            scores = self.task_logits(pairs, ("click",))["click"]
            scores = scores.view(len(user_vec), -1) if grid else scores
        if self.spec.dot_product:
            score = self.retrieval(user_vec, item_vec, grid)
            scores = score if scores is None else scores + score
        return scores

    @torch.no_grad()
    def score_matrix(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Click logits for every (user, item) pair: [n_users, n_items]."""
        step = max(1, PAIRS_PER_CHUNK // max(len(items), 1))
        # Item vectors once, not per user chunk (with a large catalogue a chunk is a few users).
        item_vec, _ = self.encoder.items(items)  # [n_items, out_dim - d]
        return torch.cat(
            [self.click_grid(self.encoder.users(chunk), item_vec) for chunk in users.split(step)]
        )

    def learned_state(self) -> dict[str, torch.Tensor]:
        """What training learned: every parameter and the BatchNorm running statistics (the
        only buffers that are learned; the others hold the side data of the rows)."""
        state = dict(self.named_parameters())
        for name, module in self.named_modules():
            if isinstance(module, BatchNorm):
                state |= {f"{name}.{b}": t for b, t in module.named_buffers(recurse=False)}
        return state

    def shared_layer(self) -> torch.Tensor:
        """The weight closest to the heads that every score task shares (GradNorm balances
        the tasks' gradients there): the last shared layer's, or, in architectures that share
        nothing above the encoder, the user embedding's."""
        shared = [
            p
            for name, p in self.named_parameters()
            if p.ndim == 2 and name.startswith(tuple(f"{m}." for m in self.shared_modules))
        ]
        return shared[-1] if shared else self.encoder.user_embedding.weight

    def shared_parameter_names(self) -> list[str]:
        """Parameters that transfer as shared knowledge: the shared encoder parts and the
        architecture's shared layers (not item ids, task heads or gates)."""
        prefixes = tuple(f"encoder.{m}." for m in SHARED_ENCODER) + tuple(
            f"{m}." for m in self.shared_modules
        )
        return [name for name, _ in self.named_parameters() if name.startswith(prefixes)]

    def save(self, path: str | Path) -> None:
        """Self-describing checkpoint: spec + weights."""
        torch.save({"spec": asdict(self.spec), "state": self.state_dict()}, path)


def spec_from_dict(raw: dict) -> ModelSpec:
    """Rebuild a spec read from a checkpoint (tuples come back as tuples or lists)."""
    keys = ("bottom_dims", "tower_dims", "expert_dims", "score_tasks")
    tuples = {k: tuple(raw[k]) for k in keys if k in raw}
    # A checkpoint without the field predates dropping the empty slots: it has them all, which
    # is today's layout too unless its data lacked genres or item features.
    legacy = raw.get("constant_slots", not (raw["n_genres"] and raw["n_item_features"]))
    return ModelSpec(**(raw | tuples | {"constant_slots": legacy}))
