"""The input side every multi-task architecture shares: users and items -> one pair vector.

Users are an id embedding plus projected side features, plus (``history_length`` > 0) a
Transformer over their last N training items; items are an id vector (a learned id embedding,
or with ``item_encoder: lm`` a trained projection of the item's sentence embedding, which new
items have before their first interaction: frozen, or with ``lm_layers`` > 0 the output of the
sentence encoder's top layers trained over cached token states), a text encoding of title and
tags (bag of words or CNN), projected genres and projected side features. The item-genre head
reads the text encoding only, so pretraining on genres teaches the text encoder something
that transfers to items of a new domain (whose ids were never seen).

With ``graph_layers`` > 0 the user and item id embeddings are LightGCN-propagated over the
training user-item graph of both domains (:mod:`mtrec.core.graph`): a user's vector then
carries the items it took in the source domain, and the embeddings that transfer are the
graph's layer 0.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from mtrec.core.graph import normalized_adjacency, propagate
from mtrec.core.layers import HistoryTransformer, TextBag, TextCNN
from mtrec.core.lm_top import LMTop

if TYPE_CHECKING:
    from mtrec.core.multitask import ModelSpec


def linear(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    """``nn.Linear``; a dataset without genres or side features gives a zero-width one (a
    constant: its bias), built without torch's warning that initialising it is a no-op."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        return nn.Linear(n_in, n_out, bias=bias)


class PairEncoder(nn.Module):
    """Embeddings, text encoder, side-feature projections and the item side data (buffers)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        d = spec.embedding_dim
        self.user_embedding = nn.Embedding(spec.n_users, d)
        self.item_embedding = nn.Embedding(spec.n_items, d)
        self.text = (
            TextCNN(spec.n_tokens, d, spec.text_kernel)
            if spec.text_encoder == "cnn"
            else TextBag(spec.n_tokens, d)
        )
        # A slot the data cannot fill is left out of the pair: without genres it would be a
        # zero vector, without item features a learned constant (which the next layer's bias
        # already is); either would widen every first layer for nothing (Amazon has neither),
        # and an unused parameter stops DDP. Older checkpoints have both (spec.constant_slots).
        self.genre = (
            linear(spec.n_genres, d, bias=False) if spec.n_genres or spec.constant_slots else None
        )
        # Created between the two, where it always was: seeded initialisation (and so every
        # published figure) stays as it was.
        self.user_side = linear(spec.n_user_features, d)
        self.item_side = (
            linear(spec.n_item_features, d) if spec.n_item_features or spec.constant_slots else None
        )
        # User vector (d) + item id and text (2d) + the genre and side vectors the data has.
        self.out_dim = d * (3 + (self.genre is not None) + (self.item_side is not None))
        self.category = linear(d, spec.n_genres)
        # Side data lives with the model so a batch is just (user, item) indices.
        self.register_buffer(
            "item_tokens", torch.zeros(spec.n_items, spec.max_tokens, dtype=torch.long)
        )
        self.register_buffer("item_genres", torch.zeros(spec.n_items, spec.n_genres))
        self.register_buffer("item_features", torch.zeros(spec.n_items, spec.n_item_features))
        self.register_buffer("user_features", torch.zeros(spec.n_users, spec.n_user_features))
        self.lm: nn.Linear | None = None
        self.lm_top: LMTop | None = None
        if spec.item_encoder == "lm" and spec.lm_layers:
            # The encoder's top layers train; their input, the token states, is frozen (buffers).
            shape = (spec.n_items, spec.lm_seq_len)
            self.register_buffer("item_lm_states", torch.zeros(*shape, spec.lm_dim).half())
            self.register_buffer("item_lm_mask", torch.zeros(*shape, dtype=torch.bool))
            self.lm = nn.Linear(spec.lm_dim, d)
            self.lm_top = LMTop(
                spec.lm_layers, spec.lm_dim, spec.lm_heads, spec.lm_ffn_dim, spec.dropout
            )
        elif spec.item_encoder == "lm":
            # Frozen by construction: a buffer, never a parameter; only the projection trains.
            self.register_buffer("item_lm", torch.zeros(spec.n_items, spec.lm_dim))
            self.lm = nn.Linear(spec.lm_dim, d)
        elif spec.item_encoder != "id" or spec.lm_layers:
            raise ValueError(
                f"item_encoder {spec.item_encoder!r} with lm_layers {spec.lm_layers}: known "
                "encoders id, lm; only lm has layers to fine-tune"
            )
        self.history: HistoryTransformer | None = None
        if spec.history_length:
            self.history = HistoryTransformer(
                d, spec.history_length, spec.history_heads, spec.history_layers, spec.dropout
            )
            self.register_buffer(
                "user_history", torch.zeros(spec.n_users, spec.history_length, dtype=torch.long)
            )
        self.graph_layers = spec.graph_layers
        if spec.graph_layers:
            if spec.item_encoder != "id":
                raise ValueError(
                    f"graph_layers {spec.graph_layers} propagates id embeddings: use "
                    f"item_encoder 'id', not {spec.item_encoder!r}"
                )
            # (user, item) training positives; their number is the data's, so a checkpoint's
            # buffer may differ in length from a fresh model's (see _load_from_state_dict).
            self.register_buffer("graph_edges", torch.zeros(2, 0, dtype=torch.long))
        self._adjacency: torch.Tensor | None = None  # built from graph_edges on first use
        # The last propagation and what it was computed from (see _id_tables).
        self._tables: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None
        for emb in (self.user_embedding, self.item_embedding, self.text.embedding):
            nn.init.normal_(emb.weight, std=0.05)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        edges = state_dict.get(f"{prefix}graph_edges")
        if edges is not None and self.graph_layers:
            self.graph_edges = torch.empty_like(edges, device=self.graph_edges.device)
        self._adjacency, self._tables = None, None
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _id_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) id tables: the embeddings, or their propagation over the graph.

        A training step asks for them 2-4 times (the rows' users and items, the ranking loss's
        users and candidates) and full-ranking evaluation once per chunk of users: the
        propagation over the whole graph is their main cost, so it is reused while it is
        current. With autograd, until a backward pass goes through it (the optimizer step
        follows; the fused Adam does not bump the weights' version counters); without, in
        eval mode only, until ``train()`` is called. Loading weights, new side data or an
        in-place change of the embeddings (their version) recomputes it too."""
        users, items = self.user_embedding.weight, self.item_embedding.weight
        if not self.graph_layers:
            return users, items
        if self._adjacency is None or self._adjacency.device != users.device:
            n_users = len(users)
            self._adjacency = normalized_adjacency(*self.graph_edges, n_users, len(items))
            self._tables = None
        grad = torch.is_grad_enabled()
        key = (users.data_ptr(), users._version, items.data_ptr(), items._version, grad)
        if self._tables is not None and self._tables[0] == key:
            return self._tables[1]
        out = propagate(self._adjacency, torch.cat([users, items]), self.graph_layers)
        tables = out[: len(users)], out[len(users) :]
        self._tables = None
        if grad and out.requires_grad:
            self._tables = (key, tables)
            out.register_hook(self._backward_done)
        elif not grad and not self.training:
            self._tables = (key, tables)
        return tables

    def _backward_done(self, grad: torch.Tensor) -> None:
        """A backward pass went through the cached tables: their graph is spent, and the
        optimizer is about to change the weights."""
        self._tables = None

    def train(self, mode: bool = True) -> PairEncoder:
        self._tables = None  # training may change the weights (fused Adam: no version bump)
        return super().train(mode)

    def set_side_features(
        self,
        item_tokens: torch.Tensor,
        item_genres: torch.Tensor,
        item_features: torch.Tensor,
        user_features: torch.Tensor,
        user_history: torch.Tensor | None = None,
        item_lm: torch.Tensor | None = None,
        item_lm_states: torch.Tensor | None = None,
        item_lm_mask: torch.Tensor | None = None,
        graph_edges: torch.Tensor | None = None,
    ) -> None:
        """Install token ids [n_items, max_tokens], genre multi-hot [n_items, n_genres],
        numeric features [n_items, ·] and [n_users, ·], (history models) each user's last
        training items [n_users, history_length] and (lm items) the sentence embeddings
        [n_items, lm_dim] or, with ``lm_layers`` > 0, the token states entering the top layers
        [n_items, lm_seq_len, lm_dim] and their mask [n_items, lm_seq_len], and (graph models)
        the training (user, item) positives of every domain [2, n_edges]."""
        if self.graph_layers:
            if graph_edges is None:
                raise ValueError("this model propagates over the training graph: pass graph_edges")
            self.graph_edges = graph_edges.to(self.graph_edges.device, torch.long).clone()
            self._adjacency, self._tables = None, None
        if self.lm_top is not None:
            if item_lm_states is None or item_lm_mask is None:
                raise ValueError(
                    "this model fine-tunes the LM's top layers: pass item_lm_states and "
                    "item_lm_mask"
                )
            self.item_lm_states.copy_(item_lm_states)
            self.item_lm_mask.copy_(item_lm_mask)
        elif self.lm is not None:
            if item_lm is None:
                raise ValueError("this model encodes items by their text embedding: pass item_lm")
            self.item_lm.copy_(item_lm)
        self.item_tokens.copy_(item_tokens)
        self.item_genres.copy_(item_genres)
        self.item_features.copy_(item_features)
        self.user_features.copy_(user_features)
        if self.history is not None:
            if user_history is None:
                raise ValueError("this model encodes user history: pass user_history")
            self.user_history.copy_(user_history)

    def users(self, users: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """[n] -> [n, d]. ``exclude`` [n]: an item each user's history is read without (the
        row's own item in training: with it there, a model learns to find the item in the
        history instead of what the history predicts)."""
        ids = self._id_tables()[0][users] if self.graph_layers else self.user_embedding(users)
        vector = ids + self.user_side(self.user_features[users])
        if self.history is not None:
            items = self.user_history[users]
            if exclude is not None:
                items = items.masked_fill(items == exclude.unsqueeze(1), 0)
            vector = vector + self.history(items, self.item_ids(items))
        return vector

    def item_ids(self, items: torch.Tensor) -> torch.Tensor:
        """The item's own vector [n] -> [n, d]: its id embedding or its projected LM embedding."""
        if self.lm is not None:
            return self.lm(self.lm_vectors(items))
        if self.graph_layers:
            return self._id_tables()[1][items]
        return self.item_embedding(items)

    def lm_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """The items' sentence embeddings [..., lm_dim]: the frozen ones, or (``lm_layers`` > 0)
        the top layers' output over the cached token states, each distinct item once."""
        if self.lm_top is None:
            return self.item_lm[items]
        unique, inverse = torch.unique(items, return_inverse=True)
        return self.lm_top(self.item_lm_states[unique], self.item_lm_mask[unique])[inverse]

    def items(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n] -> item vector [n, out_dim - d] and its text encoding [n, d]."""
        text = self.text(self.item_tokens[items])
        parts = [self.item_ids(items), text]
        if self.genre is not None:
            parts.append(self.genre(self.item_genres[items]))
        if self.item_side is not None:
            parts.append(self.item_side(self.item_features[items]))
        return torch.cat(parts, dim=-1), text

    def forward(
        self, users: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Row-wise pairs: [n, out_dim] and the items' text encodings [n, d]; each user's
        history is read without the row's item."""
        item_vec, text = self.items(items)
        return torch.cat([self.users(users, exclude=items), item_vec], dim=-1), text
