"""Multi-gate Mixture-of-Experts.

Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts", KDD 2018. Shared experts; each task mixes them with its own softmax gate.
"""

from __future__ import annotations

import torch
from torch import nn

from mtrec.core.layers import experts, mix, towers
from mtrec.core.multitask import ModelSpec, MultiTaskModel


class MMoE(MultiTaskModel):
    """pair -> n_experts expert MLPs -> per-task gated mixture -> tower."""

    shared_modules = ("experts",)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        width = self.encoder.out_dim
        self.experts = experts(
            width, spec.expert_dims, spec.dropout, spec.n_experts, spec.batch_norm
        )
        self.gates = nn.ModuleDict({t: nn.Linear(width, spec.n_experts) for t in spec.score_tasks})
        self.towers = towers(
            spec.expert_dims[-1], spec.tower_dims, spec.dropout, spec.score_tasks, spec.batch_norm
        )

    def task_logits(
        self, pairs: torch.Tensor, tasks: tuple[str, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        outputs = [expert(pairs) for expert in self.experts]  # n_experts x [n, h]
        return {
            t: self.towers[t](mix(self.gates[t](pairs), outputs)).squeeze(-1)
            for t in tasks or self.spec.score_tasks
        }
