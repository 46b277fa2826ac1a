"""Task weighting: how the per-task losses combine into one training loss.

- ``static``: the fixed weights from params (the weighted shared model).
- ``uncertainty``: Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
  Losses", CVPR 2018: a learned log-variance s_t per task, loss = sum w_t (exp(-s_t) L_t + s_t).
- ``dwa``: Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019
  (Dynamic Weight Average): lambda_t = K softmax_t(r_t / T), r_t = L_t(e-1) / L_t(e-2), so a
  task whose loss stopped falling gets more weight.
- ``gradnorm``: Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for
  Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018: learned scales g_t whose
  weighted task gradients at the last shared layer, G_t = ||∇_W g_t w_t L_t||, are pulled
  towards mean(G) * (w_t / mean w) * r_t^alpha, r_t the task's loss ratio L_t / L_t(0)
  relative to the mean ratio (a task that trains slower gets a larger gradient).

In every scheme the static weights still apply as priors; a task weighted 0 does not train.
Validation always uses the static weights, so early stopping compares like with like.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

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


# Smallest GradNorm scale relative to the mean scale of 1.
_MIN_SCALE = 1e-3


class GradNorm(StaticWeights):
    """GradNorm's learned task scales (their parameters join the optimizer). Tasks whose loss
    does not reach ``shared`` (the category head reads the text encoder alone) keep their
    static weight."""

    def __init__(self, weights: Mapping[str, float], alpha: float, shared: torch.Tensor) -> None:
        super().__init__(weights)
        self.alpha = alpha
        self.shared = [shared]  # a list: the model's weight, not a parameter of this module
        self.scales = nn.Parameter(torch.ones(len(self.weights)))
        self.initial: torch.Tensor | None = None  # each task's first loss, L_t(0)
        # The last step's gradient norms G_t and their targets (what GradNorm balances).
        self.norms = torch.zeros(len(self.weights))
        self.targets = torch.zeros(len(self.weights))

    def multipliers(self) -> dict[str, float]:
        scales = self.scales.detach().tolist()
        return {t: w * g for (t, w), g in zip(self.weights.items(), scales, strict=True)}

    def combine(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        priors = torch.tensor(list(self.weights.values()), device=self.scales.device)
        values = torch.stack([losses[t] for t in self.weights])
        grads = [
            torch.autograd.grad(w * losses[t], self.shared, retain_graph=True, allow_unused=True)[0]
            for t, w in self.weights.items()
        ]
        reached = torch.tensor([g is not None for g in grads], device=priors.device)
        raw = torch.stack([g.norm() if g is not None else priors.new_zeros(()) for g in grads])
        with torch.no_grad():
            # Only the scales' ratios matter: keep the reached ones summing to their count. A
            # scale stepped below 0 would flip its task's loss; the floor keeps it training.
            kept = self.scales[reached].clamp(min=_MIN_SCALE)
            self.scales[reached] = kept * (len(kept) / kept.sum())
            if self.initial is None:
                self.initial = values.detach().clamp(min=torch.finfo(values.dtype).tiny)
            rate = values.detach() / self.initial
            rate = rate / rate[reached].mean()
            norms = self.scales.detach() * raw
            share = priors / priors[reached].mean()
            targets = norms[reached].mean() * share * rate**self.alpha
        self.norms, self.targets = norms.detach(), targets
        balance = ((self.scales * raw.detach() - targets).abs() * reached).sum()
        return (priors * self.scales.detach() * values).sum() + balance


def make_weighting(
    kind: str,
    weights: Mapping[str, float],
    temperature: float,
    alpha: float = 1.5,
    shared: Callable[[], torch.Tensor] | None = None,
) -> StaticWeights:
    """The weighting scheme named ``kind`` (``shared``: gives the layer GradNorm balances at)."""
    if kind == "static":
        return StaticWeights(weights)
    if kind == "uncertainty":
        return UncertaintyWeights(weights)
    if kind == "dwa":
        return DynamicWeightAverage(weights, temperature)
    if kind == "gradnorm":
        if shared is None:
            raise ValueError("gradnorm balances gradients at a shared layer: pass shared")
        return GradNorm(weights, alpha, shared())
    raise ValueError(f"unknown task weighting {kind!r}; known: static, uncertainty, dwa, gradnorm")
