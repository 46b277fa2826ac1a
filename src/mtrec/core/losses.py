"""Per-task losses, each on the rows it is defined for (``weighting`` combines them)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def task_losses(
    out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor], item_genres: torch.Tensor
) -> dict[str, torch.Tensor]:
    """click / like BCE on every row (like over the entire space), rating MSE on observed rows,
    category multi-label BCE on the batch's items."""
    losses = {
        "click": F.binary_cross_entropy_with_logits(out["click"], batch["click"]),
        "like": F.binary_cross_entropy_with_logits(out["like"], batch["like"]),
        "category": F.binary_cross_entropy_with_logits(out["category"], item_genres[batch["item"]]),
    }
    observed = batch["click"] > 0
    losses["rating"] = (
        F.mse_loss(out["rating"][observed], batch["rating"][observed])
        if observed.any()
        else out["rating"].sum() * 0.0
    )
    return losses
