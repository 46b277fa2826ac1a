"""Entire Space Multi-task Model.

Ma et al., "Entire Space Multi-Task Model: An Effective Approach for Estimating Post-Click
Conversion Rate", SIGIR 2018. Here "conversion" is like: p(like) = p(click) * p(like | click),
both towers on the shared encoder, trained on every row (the entire space), so the like
estimate is never above the click estimate and needs no click-only training set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtrec.core.layers import towers
from mtrec.core.multitask import ModelSpec, MultiTaskModel

_EPS = 1e-7


class ESMM(MultiTaskModel):
    """pair -> CTR tower, CVR (like given click) tower, rating tower."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        dims = (*spec.bottom_dims, *spec.tower_dims)
        self.towers = towers(self.encoder.out_dim, dims, spec.dropout, ("ctr", "cvr", "rating"))

    def task_logits(self, pairs: torch.Tensor) -> dict[str, torch.Tensor]:
        ctr, cvr, rating = (self.towers[t](pairs).squeeze(-1) for t in ("ctr", "cvr", "rating"))
        log_ctcvr = F.logsigmoid(ctr) + F.logsigmoid(cvr)  # log p(click and like)
        # Back to a logit so the shared BCE-with-logits loss applies to pCTCVR directly.
        log_not = torch.log(torch.clamp(-torch.expm1(log_ctcvr), min=_EPS))
        return {"click": ctr, "like": log_ctcvr - log_not, "rating": rating}
