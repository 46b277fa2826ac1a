"""LightGCN (He et al., 2020): user and item embeddings smoothed over the training user-item
graph with a symmetric-normalised sparse adjacency, the layers averaged; trained with BPR."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def normalized_adjacency(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int
) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph as a sparse [n_users + n_items] square matrix;
    nodes 0..n_users-1 are users, the rest items. Repeated (user, item) pairs count once."""
    n = n_users + n_items
    edges = torch.unique(torch.stack([users, items + n_users]), dim=1)
    rows = torch.cat([edges[0], edges[1]])
    cols = torch.cat([edges[1], edges[0]])
    degree = torch.bincount(rows, minlength=n).double()
    # Isolated nodes (items of the domain nobody trained on) keep a zero row, not a NaN.
    inv_sqrt = torch.where(degree > 0, degree.rsqrt(), torch.zeros_like(degree))
    values = (inv_sqrt[rows] * inv_sqrt[cols]).float()
    indices = torch.stack([rows, cols])
    return torch.sparse_coo_tensor(indices, values, (n, n), check_invariants=True).coalesce()


def propagate(adjacency: torch.Tensor, embeddings: torch.Tensor, layers: int) -> torch.Tensor:
    """Mean of E, AE, ..., A^L E (LightGCN's layer combination with equal weights)."""
    total, current = embeddings, embeddings
    for _ in range(layers):
        current = torch.sparse.mm(adjacency, current)
        total = total + current
    return total / (layers + 1)


class LightGCN(nn.Module):
    """Free user and item embeddings (layer 0) propagated over fixed training graphs, one per
    domain. Users are shared, so every domain's clicks train the layer-0 user vectors each
    graph propagates; a domain's scores read its own graph only (one graph of both domains
    mixes a user's items of the other domain into every layer: docs/models.md, seventh round)."""

    def __init__(
        self,
        adjacencies: Sequence[torch.Tensor],
        n_users: int,
        n_items: int,
        dim: int,
        layers: int,
    ):
        super().__init__()
        self.n_users, self.layers = n_users, layers
        for domain, adjacency in enumerate(adjacencies):
            self.register_buffer(f"adjacency{domain}", adjacency, persistent=False)
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        # Xavier-uniform, as the reference implementations (LightGCN, RecBole).
        for emb in (self.user, self.item):
            nn.init.xavier_uniform_(emb.weight)

    def tables(self, domain: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated (user, item) embedding tables over ``domain``'s graph: what every score
        of that domain is a dot product of."""
        out = propagate(
            self.get_buffer(f"adjacency{domain}"),
            torch.cat([self.user.weight, self.item.weight]),
            self.layers,
        )
        return out[: self.n_users], out[self.n_users :]

    def ego(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-0 tables (the parameters the L2 penalty acts on)."""
        return self.user.weight, self.item.weight
