"""Mini-batches as slices of pre-built tensors: no per-row Python, no DataLoader."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch

Batch = dict[str, torch.Tensor]
# Rewrites an epoch's columns before batching (e.g. fresh negatives); gets the epoch generator.
Refresh = Callable[[Batch, torch.Generator | None], Batch]


class TensorBatches:
    """Iterate aligned column tensors in batches, reshuffled each epoch when ``shuffle``.

    ``shard=(rank, world)`` keeps every world-th row of each epoch's order (data-parallel
    training: the ranks share the generator's seed, so their shards are disjoint)."""

    def __init__(
        self,
        columns: Mapping[str, torch.Tensor],
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
        refresh: Refresh | None = None,
    ) -> None:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns have different lengths: {lengths}")
        self.columns = dict(columns)
        self.n = lengths.pop()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.shard = shard
        self.refresh = refresh

    def __len__(self) -> int:
        rank, world = self.shard
        rows = len(range(rank, self.n, world))
        return (rows + self.batch_size - 1) // self.batch_size

    def to(self, device: torch.device) -> TensorBatches:
        """Move every column once (not per batch)."""
        self.columns = {k: v.to(device) for k, v in self.columns.items()}
        return self

    def __iter__(self) -> Iterator[Batch]:
        columns = self.columns
        if self.refresh is not None:
            columns = self.refresh(columns, self.generator)
        if self.shuffle:
            # One gather per epoch, then contiguous slices (views) per batch.
            perm = torch.randperm(self.n, generator=self.generator).to(
                next(iter(columns.values())).device
            )
            columns = {k: v[perm] for k, v in columns.items()}
        rank, world = self.shard
        if world > 1:
            columns = {k: v[rank::world] for k, v in columns.items()}
        for start in range(0, len(next(iter(columns.values()))), self.batch_size):
            yield {k: v[start : start + self.batch_size] for k, v in columns.items()}


class MixedBatches:
    """Target rows plus, each epoch, ``ratio`` x as many source rows drawn with probability
    proportional to ``weights`` (uniform when all equal), shuffled together.

    Drawing rather than weighting keeps an epoch's cost proportional to the target data
    whatever the size of the source, and lets the same loss see importance-weighted source
    rows (``sample_weighted``) or plain ones (``joint``).
    """

    def __init__(
        self,
        target: Mapping[str, torch.Tensor],
        source: Mapping[str, torch.Tensor],
        weights: torch.Tensor,
        ratio: float,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> None:
        if set(target) != set(source):
            raise ValueError(f"target columns {sorted(target)} != source {sorted(source)}")
        if len(weights) != len(next(iter(source.values()))) or bool((weights <= 0).any()):
            raise ValueError("need one positive weight per source row")
        self.target, self.source = dict(target), dict(source)
        self.weights = weights.double()
        self.n_target = len(next(iter(target.values())))
        self.n_draw = max(1, round(ratio * self.n_target))
        self.batch_size = batch_size
        self.generator = generator
        self.shard = (0, 1)
        self.refresh: Refresh | None = None

    def __len__(self) -> int:
        rows = self.n_target + self.n_draw
        return (len(range(self.shard[0], rows, self.shard[1])) + self.batch_size - 1) // (
            self.batch_size
        )

    def to(self, device: torch.device) -> MixedBatches:
        """Move every column once (not per batch)."""
        self.target = {k: v.to(device) for k, v in self.target.items()}
        self.source = {k: v.to(device) for k, v in self.source.items()}
        return self

    def __iter__(self) -> Iterator[Batch]:
        device = next(iter(self.target.values())).device
        drawn = torch.multinomial(
            self.weights, self.n_draw, replacement=True, generator=self.generator
        ).to(device)
        columns = {k: torch.cat([v, self.source[k][drawn]]) for k, v in self.target.items()}
        return iter(
            TensorBatches(columns, self.batch_size, True, self.generator, self.shard, self.refresh)
        )


class NegativeResampler:
    """Fresh negatives every epoch: each unclicked row's item is redrawn uniformly from its
    own domain's items. Fixed negatives drawn once are memorised within an epoch or two on
    sparse implicit data; redrawing them is what BPR-style training does. A redrawn item can
    (rarely) be one the user clicked: it then counts as a negative for that epoch."""

    def __init__(self, item_domain: torch.Tensor, pools: list[torch.Tensor]) -> None:
        # item_domain[item] = index into pools; pools[d] = the items of domain d.
        self.item_domain = item_domain
        self.flat = torch.cat(pools)
        sizes = torch.tensor([len(p) for p in pools])
        self.sizes, self.starts = sizes, torch.cumsum(sizes, 0) - sizes

    def __call__(self, columns: Batch, generator: torch.Generator | None) -> Batch:
        negative = columns["click"] == 0
        items = columns["item"].clone()
        domain = self.item_domain[items[negative].cpu()]
        draw = torch.rand(len(domain), generator=generator)
        picked = self.starts[domain] + (draw * self.sizes[domain]).long()
        items[negative] = self.flat[picked].to(items.device)
        return columns | {"item": items}
