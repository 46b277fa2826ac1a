"""Per-task losses, each on the rows it is defined for (``weighting`` combines them)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch
import torch.nn.functional as F


def task_losses(
    out: Mapping[str, torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    item_genres: torch.Tensor,
    tasks: Collection[str] | None = None,
) -> dict[str, torch.Tensor]:
    """click / like BCE on every row (like over the entire space), rating MSE on observed rows,
    category multi-label BCE on the batch's items; only ``tasks`` when given (a task weighted
    0 costs nothing)."""
    wanted = set(tasks) if tasks is not None else {"click", "like", "rating", "category"}
    losses = {
        t: F.binary_cross_entropy_with_logits(out[t], batch[t])
        for t in ("click", "like")
        if t in wanted
    }
    if "category" in wanted:
        # A dataset without categories has no category task (a mean over nothing is NaN).
        losses["category"] = (
            F.binary_cross_entropy_with_logits(out["category"], item_genres[batch["item"]])
            if item_genres.shape[1]
            else out["category"].sum() * 0.0
        )
    if "rating" in wanted:
        # A masked mean, not boolean indexing: no host sync (``.any()``) or nonzero per batch.
        observed = (batch["click"] > 0).to(out["rating"].dtype)
        squared = (out["rating"] - batch["rating"]) ** 2
        losses["rating"] = (squared * observed).sum() / observed.sum().clamp(min=1.0)
    return {t: v for t, v in losses.items() if t in wanted}
