"""Independent towers: no sharing above the encoder, the baseline that multi-task sharing
must beat (each task has its own bottom and tower)."""

from __future__ import annotations

import torch

from mtrec.core.layers import towers
from mtrec.core.multitask import ModelSpec, MultiTaskModel


class IndependentTowers(MultiTaskModel):
    """pair -> a separate MLP (bottom + tower sizes) per task."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        dims = (*spec.bottom_dims, *spec.tower_dims)
        self.towers = towers(
            self.encoder.out_dim, dims, spec.dropout, spec.score_tasks, spec.batch_norm
        )

    def task_logits(
        self, pairs: torch.Tensor, tasks: tuple[str, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        return {t: self.towers[t](pairs).squeeze(-1) for t in tasks or self.spec.score_tasks}
