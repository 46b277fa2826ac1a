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
    """pair -> CTR tower, CVR (like given click) tower, and a rating tower when rating is one
    of the spec's tasks."""

    def __init__(self, spec: ModelSpec) -> None:
        if "like" not in spec.score_tasks:
            raise ValueError("ESMM models click and like: score_tasks must include 'like'")
        super().__init__(spec)
        dims = (*spec.bottom_dims, *spec.tower_dims)
        names = ("ctr", "cvr", "rating") if "rating" in spec.score_tasks else ("ctr", "cvr")
        self.towers = towers(self.encoder.out_dim, dims, spec.dropout, names, spec.batch_norm)

    def task_logits(
        self, pairs: torch.Tensor, tasks: tuple[str, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        wanted = tasks or self.spec.score_tasks
        ctr = self.towers["ctr"](pairs).squeeze(-1)
        out = {"click": ctr}
        if "like" in wanted:
            cvr = self.towers["cvr"](pairs).squeeze(-1)
            log_ctcvr = F.logsigmoid(ctr) + F.logsigmoid(cvr)  # log p(click and like)
            # Back to a logit so the shared BCE-with-logits loss applies to pCTCVR directly.
            log_not = torch.log(torch.clamp(-torch.expm1(log_ctcvr), min=_EPS))
            out["like"] = log_ctcvr - log_not
        if "rating" in wanted:
            out["rating"] = self.towers["rating"](pairs).squeeze(-1)
        return {t: out[t] for t in wanted}
