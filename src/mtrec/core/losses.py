"""Per-task losses, each on the rows it is defined for (``weighting`` combines them)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from mtrec.core.multitask import MultiTaskModel


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


# Click losses that rank each clicked row's item against other items (``bce`` is pointwise).
RANKING_LOSSES = ("bpr", "softmax", "ccl")
# softmax's log q_j: none; drawn = under the sampler that drew column j (in-batch clicks:
# popularity; unclicked rows: uniform in the domain); mixture = under both together (either
# sampler may draw any item, so that is its probability of being a candidate at all).
LOGQ_CORRECTIONS = ("none", "drawn", "mixture")


def bpr_loss(scores: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Rendle et al., UAI 2009: mean over rows of mean_j -log sigmoid(s_ii - s_ij) over the row's
    negatives. ``scores`` [P, C] has row i's positive at column i; ``negative`` [P, C] marks
    the columns that count as row i's negatives."""
    gaps = F.softplus(scores - scores.diagonal().unsqueeze(1))  # -log sigmoid(s_ii - s_ij)
    return _row_mean(gaps, negative).mean()


def softmax_loss(
    scores: torch.Tensor,
    negative: torch.Tensor,
    temperature: float,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled softmax: -log of row i's positive among itself and its negatives, logits
    s_ij / T - log q_j. ``log_q`` [C] is each column's log sampling probability (the logQ
    correction of Yi et al., RecSys 2019: a popular item drawn often as an in-batch negative
    is not pushed down for its popularity alone); None = no correction."""
    logits = scores / temperature
    if log_q is not None:
        logits = logits - log_q
    candidate = negative | torch.eye(*scores.shape, dtype=torch.bool, device=scores.device)
    logits = logits.masked_fill(~candidate, float("-inf"))
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


def ccl_loss(
    cosines: torch.Tensor, negative: torch.Tensor, margin: float, negative_weight: float
) -> torch.Tensor:
    """SimpleX's cosine contrastive loss (Mao et al., CIKM 2021): mean over rows of
    (1 - cos(u, i+)) + w * mean_j max(0, cos(u, j) - m) over the row's negatives."""
    positive = 1.0 - cosines.diagonal()
    return (positive + negative_weight * _row_mean(F.relu(cosines - margin), negative)).mean()


def _row_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of each row's ``values`` where ``mask`` (0 for a row without any)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(1) / mask.sum(1).clamp(min=1.0)


@dataclass(frozen=True)
class RankingLoss:
    """A ranking click loss over a batch: each clicked row's item against the batch's other
    clicked items (in-batch negatives, drawn in proportion to popularity) and the items of up
    to ``negatives`` of its unclicked rows (uniform draws from their domain, fresh each epoch
    under ``NegativeResampler``).

    A candidate is not a negative of row i where it is row i's own item, another clicked item
    of the same user in the batch (a positive), or an item of another domain (``item_domain``).
    """

    kind: str
    negatives: int
    item_domain: torch.Tensor  # [n_items] -> domain index
    domain_size: torch.Tensor  # [n_domains] items per domain
    # [n_items] share of the training clicks (an item never clicked counted once: a share of
    # 0 would make its log sampling probability -inf)
    item_share: torch.Tensor
    temperature: float = 1.0
    logq_correction: str = "drawn"  # see LOGQ_CORRECTIONS
    margin: float = 0.9
    negative_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in RANKING_LOSSES:
            raise ValueError(f"unknown ranking loss {self.kind!r}; known: {RANKING_LOSSES}")
        if self.logq_correction not in LOGQ_CORRECTIONS:
            raise ValueError(
                f"unknown logq_correction {self.logq_correction!r}; known: {LOGQ_CORRECTIONS}"
            )

    def to(self, device: torch.device) -> RankingLoss:
        """The item tables on ``device`` (once, not per batch)."""
        tables = ("item_domain", "domain_size", "item_share")
        return replace(self, **{t: getattr(self, t).to(device) for t in tables})

    def candidates(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Users [P] of the clicked rows, candidate items [P + N] (row i's positive at column
        i), the negative mask [P, P + N] and each column's log sampling probability [P + N]."""
        clicked = batch["click"] > 0
        users, positives = batch["user"][clicked], batch["item"][clicked]
        drawn = batch["item"][~clicked][: self.negatives]
        items = torch.cat([positives, drawn])
        domain = self.item_domain[items]
        n_pos = len(positives)
        negative = (items.unsqueeze(0) != positives.unsqueeze(1)) & (
            domain.unsqueeze(0) == domain[:n_pos].unsqueeze(1)
        )
        # Another clicked row of the same user is that user's positive too.
        same_user = users.unsqueeze(0) == users.unsqueeze(1)  # [P, P]
        negative[:, :n_pos] &= ~same_user
        # Expected draws of each column's item (P clicks by popularity, N uniform in its
        # domain): drawn counts only the sampler that drew the column, mixture counts both.
        popular = n_pos * self.item_share[items]
        uniform = len(drawn) / self.domain_size[domain].to(self.item_share)
        if self.logq_correction == "mixture":
            log_q = torch.log(popular + uniform)
        else:
            log_q = torch.cat([popular[:n_pos], uniform[n_pos:]]).log()
        return users, items, negative, log_q

    def __call__(self, model: MultiTaskModel, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The click loss of ``model`` on ``batch``."""
        users, items, negative, log_q = self.candidates(batch)
        if not len(users):  # a batch without clicks ranks nothing
            return batch["click"].sum() * 0.0
        item_vec, _ = model.encoder.items(items)
        # Row i's positive is candidate i: the user's history is read without it.
        user_vec = model.encoder.users(users, exclude=items[: len(users)])
        scores = model.click_grid(user_vec, item_vec)  # [P, P + N]
        if self.kind == "bpr":
            return bpr_loss(scores, negative)
        if self.kind == "softmax":
            correction = log_q if self.logq_correction != "none" else None
            return softmax_loss(scores, negative, self.temperature, correction)
        return ccl_loss(scores, negative, self.margin, self.negative_weight)
