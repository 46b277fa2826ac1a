"""Building blocks shared by every model (one definition, reused, never copied)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Dropout masks on the CPU are drawn 16 bits at a time: p is rounded to a multiple of 2^-16.
_MASK_LEVELS = 1 << 16
_INT64_MIN = -(1 << 63)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout (zero each element with probability ``p``, scale the rest by 1/(1-p)).

    On the CPU, torch's ``bernoulli_`` draws one random number per element and is most of a
    small MLP's training step (two thirds of a 16-expert PLE level, measured). Here one 64-bit
    draw gives four 16-bit uniforms, each compared with round(p * 2^16): a Bernoulli(1 - p)
    mask from the same seeded generator, at a quarter of the draws. Elsewhere (CUDA's fused
    kernel is already fast) and for p outside (0, 1) it is ``F.dropout``.
    """
    cutoff = round(p * _MASK_LEVELS)
    if not training or x.device.type != "cpu" or not 0 < cutoff < _MASK_LEVELS:
        return F.dropout(x, p, training)
    n = x.numel()
    # random_(INT64_MIN, None) fills all 64 bits, so every int16 view of a draw is uniform
    # over [-2^15, 2^15).
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
    uniform = draws.random_(_INT64_MIN, None).view(torch.int16)[:n].view(x.shape)
    # Compared as floats, in place: int16 -> bool -> float is 7x slower than int16 -> float
    # then ge_ (a float mask directly), measured on a [4096, 768] block.
    keep = uniform.float().ge_(cutoff - _MASK_LEVELS // 2)
    keep.mul_(_MASK_LEVELS / (_MASK_LEVELS - cutoff))
    return x * keep.to(x.dtype)


class Dropout(nn.Module):
    """:func:`dropout` as a module (``nn.Dropout``'s drop-in)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class BatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` for the MLPs, with two rules for training:

    - once its affine weights are frozen (the frozen transfer strategy), it also keeps the
      source domain's running statistics instead of re-estimating them on target batches, so
      a frozen layer stays the function pretraining learned;
    - a one-row batch (an epoch's last) has no batch variance: it is normalised with the
      running statistics, and they are left as they are.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and len(x) > 1 and self.weight.requires_grad:
            return super().forward(x)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


def mlp(
    in_dim: int,
    dims: list[int],
    dropout: float = 0.0,
    out_dim: int | None = None,
    batch_norm: bool = False,
) -> nn.Sequential:
    """Linear-(BatchNorm)-ReLU-Dropout stack; an optional final linear layer without
    activation."""
    layers: list[nn.Module] = []
    for dim in dims:
        layers.append(nn.Linear(in_dim, dim))
        if batch_norm:
            layers.append(BatchNorm(dim))
        layers += [nn.ReLU(inplace=True), Dropout(dropout)]
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
        # tokens: [batch, max_tokens] -> [batch, dim]. One fused embedding_bag kernel (padding
        # excluded from the mean, empty bags -> zeros) instead of gather * mask, sum, divide:
        # the masked product was a third of a training step.
        if tokens.device.type != "cpu":  # no boolean indexing: it would sync with the GPU
            return F.embedding_bag(tokens, self.embedding.weight, mode="mean", padding_idx=0)
        # On the CPU, the bag's backward sorts every index it was given, padding included:
        # passing only the real tokens (ragged, with offsets) makes it 2x cheaper on ML titles
        # (3.2 tokens per item, padded to 24).
        real = tokens > 0
        counts = real.sum(1)
        offsets = torch.cumsum(counts, 0) - counts
        return F.embedding_bag(tokens[real], self.embedding.weight, offsets, mode="mean")


class TextCNN(nn.Module):
    """1-D convolution over token embeddings, ReLU, max over the non-padding positions: word
    order within a window counts (a bag of words ignores it)."""

    def __init__(self, n_tokens: int, dim: int, kernel: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_tokens, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: [batch, max_tokens] -> [batch, dim]; items without tokens give zeros.
        mask = tokens > 0
        hidden = torch.relu(self.conv(self.embedding(tokens).transpose(1, 2)))
        hidden = hidden[..., : tokens.shape[1]].transpose(1, 2)  # even kernels pad one extra
        hidden = hidden.masked_fill(~mask.unsqueeze(-1), 0.0)
        return hidden.max(1).values


class HistoryTransformer(nn.Module):
    """Transformer encoder over a user's last N item vectors (oldest first, 0 = padding),
    read out at a learned summary token that is never masked (so empty histories work)."""

    def __init__(self, dim: int, length: int, heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.summary = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, length + 1, dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, items: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        # items: [batch, N] ids (0 = none), vectors: [batch, N, dim] -> [batch, dim]
        start = self.summary.expand(len(items), -1, -1)
        sequence = torch.cat([start, vectors], dim=1) + self.position
        padding = torch.cat([torch.zeros_like(items[:, :1], dtype=torch.bool), items == 0], dim=1)
        return self.encoder(sequence, src_key_padding_mask=padding)[:, 0]


def towers(
    in_dim: int,
    dims: tuple[int, ...],
    dropout: float,
    tasks: tuple[str, ...],
    batch_norm: bool = False,
) -> nn.ModuleDict:
    """One MLP tower with a single output per task."""
    return nn.ModuleDict(
        {t: mlp(in_dim, list(dims), dropout, out_dim=1, batch_norm=batch_norm) for t in tasks}
    )


def experts(
    in_dim: int, dims: tuple[int, ...], dropout: float, n: int, batch_norm: bool = False
) -> nn.ModuleList:
    """``n`` expert MLPs of the same shape."""
    return nn.ModuleList(mlp(in_dim, list(dims), dropout, batch_norm=batch_norm) for _ in range(n))


def mix(gate_logits: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    """Softmax-gated sum of expert outputs: [n, k] gate logits, k x [n, h] -> [n, h]."""
    # Softmax over the transposed logits ([k, n], reduced over dim 0): torch's CPU softmax
    # over a short last dim is 3x slower, and each expert's weight comes out as a contiguous
    # row (mix forward + backward 1.2-1.35x faster at k = 8 and 12, measured). A running
    # weighted sum: stacking the outputs first copies them all ([n, k, h]) for nothing.
    weights = torch.softmax(gate_logits.t(), dim=0).unsqueeze(-1)  # [k, n, 1]
    mixed = weights[0] * outputs[0]
    for i in range(1, len(outputs)):
        mixed = mixed + weights[i] * outputs[i]
    return mixed
