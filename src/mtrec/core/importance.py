"""Importance weights for source rows: how target-like each one is.

A logistic domain classifier learns p(target | x) from row features x (user and item side
features, never the genres that define the domains); with balanced classes its odds
p / (1 - p) estimate the density ratio p_target(x) / p_source(x) (Bickel, Brückner & Scheffer,
"Discriminative Learning Under Covariate Shift", JMLR 2009). Weights are clipped (a few rows
must not dominate) and normalised to mean 1 over the source rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Full-batch L-BFGS on a handful of standardised features converges in a few dozen steps.
_LBFGS_STEPS = 50


def domain_classifier(
    source: torch.Tensor, target: torch.Tensor, seed: int
) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    """Fit logistic regression target-vs-source on standardised features (balanced classes);
    returns the model and the standardisation (mean, std)."""
    torch.manual_seed(seed)
    x = torch.cat([source, target]).double()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    x = (x - mean) / std
    y = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).double()
    balance = torch.where(y > 0, len(x) / (2.0 * len(target)), len(x) / (2.0 * len(source)))
    model = torch.nn.Linear(x.shape[1], 1).double()
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=_LBFGS_STEPS)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y, weight=balance)
        loss.backward()
        return loss

    optimizer.step(closure)
    return model, mean, std


@torch.no_grad()
def importance_weights(
    source: torch.Tensor, target: torch.Tensor, clip: float, seed: int = 0
) -> torch.Tensor:
    """One positive weight per source row, mean 1: target-likeness odds, clipped to
    [1/clip, clip] before normalising."""
    model, mean, std = domain_classifier(source, target, seed)
    logits = model((source.double() - mean) / std).squeeze(-1)
    odds = torch.exp(logits).clamp(1.0 / clip, clip)
    return (odds / odds.mean()).float()
