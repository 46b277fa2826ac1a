"""Task weighting: how the per-task losses combine into one training loss.

- ``static``: the fixed weights from params (the weighted shared model).
- ``uncertainty``: Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
  Losses", CVPR 2018: a learned log-variance s_t per task, loss = sum w_t (exp(-s_t) L_t + s_t).
- ``dwa``: Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019
  (Dynamic Weight Average): lambda_t = K softmax_t(r_t / T), r_t = L_t(e-1) / L_t(e-2), so a
  task whose loss stopped falling gets more weight.

In every scheme the static weights still apply as priors; a task weighted 0 does not train.
Validation always uses the static weights, so early stopping compares like with like.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import torch
from torch import nn


class StaticWeights(nn.Module):
    """sum w_t L_t over the tasks with a non-zero weight."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__()
        self.weights = {t: w for t, w in weights.items() if w}

    def multipliers(self) -> dict[str, float]:
        """The effective weight of each task now (for logs)."""
        return dict(self.weights)

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The training loss."""
        return sum(w * losses[t] for t, w in self.multipliers().items())

    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        """Called with each task's mean training loss after every epoch."""


class UncertaintyWeights(StaticWeights):
    """Learned homoscedastic-uncertainty weights (their parameters join the optimizer)."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__(weights)
        self.log_vars = nn.Parameter(torch.zeros(len(self.weights)))

    def multipliers(self) -> dict[str, float]:
        precision = torch.exp(-self.log_vars.detach())
        return {t: w * float(p) for (t, w), p in zip(self.weights.items(), precision, strict=True)}

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return sum(
            w * (torch.exp(-s) * losses[t] + s)
            for (t, w), s in zip(self.weights.items(), self.log_vars, strict=True)
        )


class DynamicWeightAverage(StaticWeights):
    """Weights from the last two epochs' loss ratios (equal for the first two epochs)."""

    def __init__(self, weights: Mapping[str, float], temperature: float) -> None:
        super().__init__(weights)
        self.temperature = temperature
        self.history: deque[Mapping[str, float]] = deque(maxlen=2)
        self.dynamic = dict.fromkeys(self.weights, 1.0)

    def multipliers(self) -> dict[str, float]:
        return {t: w * self.dynamic[t] for t, w in self.weights.items()}

    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        self.history.append(dict(mean_losses))
        if len(self.history) < 2:
            return
        before, last = self.history
        ratios = torch.tensor([last[t] / max(before[t], 1e-12) for t in self.weights])
        scaled = len(self.weights) * torch.softmax(ratios / self.temperature, dim=0)
        self.dynamic = {t: float(v) for t, v in zip(self.weights, scaled, strict=True)}


def make_weighting(kind: str, weights: Mapping[str, float], temperature: float) -> StaticWeights:
    """The weighting scheme named ``kind``."""
    if kind == "static":
        return StaticWeights(weights)
    if kind == "uncertainty":
        return UncertaintyWeights(weights)
    if kind == "dwa":
        return DynamicWeightAverage(weights, temperature)
    raise ValueError(f"unknown task weighting {kind!r}; known: static, uncertainty, dwa")
