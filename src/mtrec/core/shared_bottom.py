"""Shared-bottom multi-task model (hard parameter sharing).

Caruana, "Multitask Learning", Machine Learning 28 (1997). One bottom MLP over the pair vector
feeds a tower per task: click, like (over the entire space) and rating.
"""

from __future__ import annotations

import torch

from mtrec.core.layers import mlp, towers
from mtrec.core.multitask import ModelSpec, MultiTaskModel


class SharedBottom(MultiTaskModel):
    """pair -> shared MLP -> one tower per task."""

    shared_modules = ("bottom",)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.bottom = mlp(
            self.encoder.out_dim, list(spec.bottom_dims), spec.dropout, batch_norm=spec.batch_norm
        )
        width = spec.bottom_dims[-1] if spec.bottom_dims else self.encoder.out_dim
        self.towers = towers(
            width, spec.tower_dims, spec.dropout, spec.score_tasks, spec.batch_norm
        )

    def task_logits(
        self, pairs: torch.Tensor, tasks: tuple[str, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        hidden = self.bottom(pairs)  # [n, bottom_dims[-1]]
        return {t: self.towers[t](hidden).squeeze(-1) for t in tasks or self.spec.score_tasks}
