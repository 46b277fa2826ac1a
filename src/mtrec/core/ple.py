"""Progressive Layered Extraction.

Tang et al., "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model
for Personalized Recommendations", RecSys 2020. Each extraction level (a CGC) has experts per
task and shared experts; a task's gate mixes its own and the shared experts, and a shared gate
mixes all of them as the shared input of the next level.
"""

from __future__ import annotations

import torch
from torch import nn

from mtrec.core.layers import experts, mix, towers
from mtrec.core.multitask import ModelSpec, MultiTaskModel


class ExtractionLevel(nn.Module):
    """One customized gate control (CGC) level."""

    def __init__(self, in_dim: int, spec: ModelSpec, last: bool) -> None:
        super().__init__()
        k, self.tasks = spec.n_experts, spec.score_tasks
        self.task_experts = nn.ModuleDict(
            {
                t: experts(in_dim, spec.expert_dims, spec.dropout, k, spec.batch_norm)
                for t in self.tasks
            }
        )
        self.shared_experts = experts(in_dim, spec.expert_dims, spec.dropout, k, spec.batch_norm)
        self.task_gates = nn.ModuleDict({t: nn.Linear(in_dim, 2 * k) for t in self.tasks})
        # The last level feeds the towers only, so it needs no shared output.
        self.shared_gate = None if last else nn.Linear(in_dim, k * (len(self.tasks) + 1))

    def forward(
        self,
        task_inputs: dict[str, torch.Tensor],
        shared_input: torch.Tensor,
        tasks: tuple[str, ...] | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Task outputs for ``tasks`` (default all) and the shared output (None at the last
        level, which then runs only the experts of ``tasks``)."""
        wanted = tasks or self.tasks
        # The shared gate mixes every task's experts; without it only the wanted ones count.
        needed = self.tasks if self.shared_gate is not None else wanted
        shared = [e(shared_input) for e in self.shared_experts]  # k x [n, h]
        own = {t: [e(task_inputs[t]) for e in self.task_experts[t]] for t in needed}
        task_out = {t: mix(self.task_gates[t](task_inputs[t]), own[t] + shared) for t in wanted}
        if self.shared_gate is None:
            return task_out, None
        everything = [o for t in self.tasks for o in own[t]] + shared
        return task_out, mix(self.shared_gate(shared_input), everything)


class PLE(MultiTaskModel):
    """pair -> ``levels`` extraction levels -> per-task tower."""

    shared_modules = ("levels",)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        if spec.levels < 1:
            raise ValueError("PLE needs at least one extraction level")
        widths = [self.encoder.out_dim] + [spec.expert_dims[-1]] * (spec.levels - 1)
        self.levels = nn.ModuleList(
            ExtractionLevel(w, spec, last=i == spec.levels - 1) for i, w in enumerate(widths)
        )
        self.towers = towers(
            spec.expert_dims[-1], spec.tower_dims, spec.dropout, spec.score_tasks, spec.batch_norm
        )

    def shared_layer(self) -> torch.Tensor:
        # The last level's shared experts feed every task's gate; its task experts do not.
        return [p for p in self.levels[-1].shared_experts.parameters() if p.ndim == 2][-1]

    def task_logits(
        self, pairs: torch.Tensor, tasks: tuple[str, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        wanted = tasks or self.spec.score_tasks
        task_inputs: dict[str, torch.Tensor] = dict.fromkeys(self.spec.score_tasks, pairs)
        shared: torch.Tensor | None = pairs
        for i, level in enumerate(self.levels):
            assert shared is not None  # only the last level returns no shared output
            # Every level but the last feeds all tasks' inputs of the next one.
            last = i == len(self.levels) - 1
            task_inputs, shared = level(task_inputs, shared, wanted if last else None)
        return {t: self.towers[t](task_inputs[t]).squeeze(-1) for t in wanted}
