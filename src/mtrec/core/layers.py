"""Building blocks shared by every model (one definition, reused, never copied)."""

from __future__ import annotations

import torch
from torch import nn


def mlp(
    in_dim: int, dims: list[int], dropout: float = 0.0, out_dim: int | None = None
) -> nn.Sequential:
    """Linear-ReLU-Dropout stack; an optional final linear layer without activation."""
    layers: list[nn.Module] = []
    for dim in dims:
        layers += [nn.Linear(in_dim, dim), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = dim
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class TextBag(nn.Module):
    """Mean of token embeddings (padding id 0 ignored): a bag-of-words text encoder."""

    def __init__(self, n_tokens: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_tokens, dim, padding_idx=0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: [batch, max_tokens] -> [batch, dim]
        mask = (tokens > 0).unsqueeze(-1).float()
        summed = (self.embedding(tokens) * mask).sum(1)
        return summed / mask.sum(1).clamp(min=1.0)


def towers(
    in_dim: int, dims: tuple[int, ...], dropout: float, tasks: tuple[str, ...]
) -> nn.ModuleDict:
    """One MLP tower with a single output per task."""
    return nn.ModuleDict({t: mlp(in_dim, list(dims), dropout, out_dim=1) for t in tasks})


def experts(in_dim: int, dims: tuple[int, ...], dropout: float, n: int) -> nn.ModuleList:
    """``n`` expert MLPs of the same shape."""
    return nn.ModuleList(mlp(in_dim, list(dims), dropout) for _ in range(n))


def mix(gate_logits: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    """Softmax-gated sum of expert outputs: [n, k] gate logits, k x [n, h] -> [n, h]."""
    weights = torch.softmax(gate_logits, dim=-1).unsqueeze(-1)  # [n, k, 1]
    return (weights * torch.stack(outputs, dim=1)).sum(1)  # [n, h]
