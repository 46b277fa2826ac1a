"""Shared-bottom multi-task model (hard parameter sharing).

Caruana, "Multitask Learning", Machine Learning 28 (1997). One bottom MLP over the user and
item representations feeds a tower per task: click, like (over the entire space) and rating;
the item-genre head reads the text encoder, so pretraining on genres teaches the encoder
something about item text that transfers to items of a new domain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from mtrec.core.layers import TextBag, mlp

SCORE_TASKS = ("click", "like", "rating")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the model; saved beside the weights."""

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


class SharedBottom(nn.Module):
    """Users (id + side features), items (id, text, genres, side features) -> shared MLP ->
    one tower per task."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        d = spec.embedding_dim
        self.user_embedding = nn.Embedding(spec.n_users, d)
        self.item_embedding = nn.Embedding(spec.n_items, d)
        self.text = TextBag(spec.n_tokens, d)
        self.genre = nn.Linear(spec.n_genres, d, bias=False)
        self.user_side = nn.Linear(spec.n_user_features, d)
        self.item_side = nn.Linear(spec.n_item_features, d)
        self.bottom = mlp(5 * d, list(spec.bottom_dims), spec.dropout)
        width = spec.bottom_dims[-1] if spec.bottom_dims else 5 * d
        self.towers = nn.ModuleDict(
            {t: mlp(width, list(spec.tower_dims), spec.dropout, out_dim=1) for t in SCORE_TASKS}
        )
        self.category = nn.Linear(d, spec.n_genres)
        # Item side features live with the model so a batch is just (user, item) indices.
        self.register_buffer(
            "item_tokens", torch.zeros(spec.n_items, spec.max_tokens, dtype=torch.long)
        )
        self.register_buffer("item_genres", torch.zeros(spec.n_items, spec.n_genres))
        self.register_buffer("item_features", torch.zeros(spec.n_items, spec.n_item_features))
        self.register_buffer("user_features", torch.zeros(spec.n_users, spec.n_user_features))
        for emb in (self.user_embedding, self.item_embedding, self.text.embedding):
            nn.init.normal_(emb.weight, std=0.05)

    def set_side_features(
        self,
        item_tokens: torch.Tensor,
        item_genres: torch.Tensor,
        item_features: torch.Tensor,
        user_features: torch.Tensor,
    ) -> None:
        """Install the catalogue and user side data: token ids [n_items, max_tokens], genre
        multi-hot [n_items, n_genres], numeric features [n_items, ·] and [n_users, ·]."""
        self.item_tokens.copy_(item_tokens)
        self.item_genres.copy_(item_genres)
        self.item_features.copy_(item_features)
        self.user_features.copy_(user_features)

    def _users(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_embedding(users) + self.user_side(self.user_features[users])  # [n, d]

    def _items(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        text = self.text(self.item_tokens[items])  # [n, d]
        genre = self.genre(self.item_genres[items])  # [n, d]
        side = self.item_side(self.item_features[items])  # [n, d]
        return torch.cat([self.item_embedding(items), text, genre, side], dim=-1), text  # [n, 4d]

    def _heads(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {t: tower(hidden).squeeze(-1) for t, tower in self.towers.items()}
        out["rating"] = out["rating"] + self.spec.rating_mean
        return out

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-row outputs: click/like logits, rating, category logits [batch, n_genres]."""
        item_vec, text = self._items(items)
        hidden = self.bottom(torch.cat([self._users(users), item_vec], dim=-1))
        out = self._heads(hidden)
        out["category"] = self.category(text)
        return out

    @torch.no_grad()
    def score_matrix(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Click logits for every (user, item) pair: [n_users, n_items]."""
        item_vec, _ = self._items(items)  # [n_items, 4d]
        user_vec = self._users(users)  # [n_users, d]
        pairs = torch.cat(
            [
                user_vec.unsqueeze(1).expand(-1, len(items), -1),
                item_vec.unsqueeze(0).expand(len(users), -1, -1),
            ],
            dim=-1,
        )  # [n_users, n_items, 5d]
        return self.towers["click"](self.bottom(pairs)).squeeze(-1)

    def save(self, path: str | Path) -> None:
        """Self-describing checkpoint: spec + weights."""
        torch.save({"spec": asdict(self.spec), "state": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> SharedBottom:
        """Rebuild a model saved with :meth:`save`."""
        blob = torch.load(path, map_location=map_location, weights_only=True)
        spec = blob["spec"]
        model = cls(
            ModelSpec(
                **{
                    **spec,
                    "bottom_dims": tuple(spec["bottom_dims"]),
                    "tower_dims": tuple(spec["tower_dims"]),
                }
            )
        )
        model.load_state_dict(blob["state"])
        return model
