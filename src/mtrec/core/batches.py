"""Mini-batches as slices of pre-built tensors: no per-row Python, no DataLoader."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

Batch = dict[str, torch.Tensor]


class TensorBatches:
    """Iterate aligned column tensors in batches, reshuffled each epoch when ``shuffle``."""

    def __init__(
        self,
        columns: Mapping[str, torch.Tensor],
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns have different lengths: {lengths}")
        self.columns = dict(columns)
        self.n = lengths.pop()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def to(self, device: torch.device) -> TensorBatches:
        """Move every column once (not per batch)."""
        self.columns = {k: v.to(device) for k, v in self.columns.items()}
        return self

    def __iter__(self) -> Iterator[Batch]:
        columns = self.columns
        if self.shuffle:
            # One gather per epoch, then contiguous slices (views) per batch.
            perm = torch.randperm(self.n, generator=self.generator).to(
                next(iter(columns.values())).device
            )
            columns = {k: v[perm] for k, v in columns.items()}
        for start in range(0, self.n, self.batch_size):
            yield {k: v[start : start + self.batch_size] for k, v in columns.items()}
