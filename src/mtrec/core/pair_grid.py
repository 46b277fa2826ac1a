"""Every (user, item) pair of a user block and an item set, kept factored for full ranking.

A pair vector is [user vector, item vector], and every architecture's first layers on it are
linear (the shared bottom, the experts, the gates, ESMM's towers). A linear layer over the
concatenation splits into a user part and an item part, W [u; i] + b = W_u u + (W_i i + b),
so over the grid it is a [n_users, out] and an [n_items, out] product and one broadcast sum,
instead of materialising [n_users * n_items, in] pairs and multiplying all of them. The grid
passes through the architecture's own ``task_logits`` unchanged: ``F.linear`` on it is
factored; any other operation gets the materialised pairs (same result, the slow way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F


class PairGrid:
    """The user-major pairs of ``user_vec`` [U, du] and ``item_vec`` [I, di]: behaves as the
    [U * I, du + di] tensor of their concatenations wherever torch takes a tensor."""

    def __init__(self, user_vec: torch.Tensor, item_vec: torch.Tensor) -> None:
        self.user_vec, self.item_vec = user_vec, item_vec

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``F.linear(pairs, weight, bias)`` without materialising the pairs: [U * I, out]."""
        d = self.user_vec.shape[1]
        users = self.user_vec @ weight[:, :d].T  # [U, out]
        items = F.linear(self.item_vec, weight[:, d:], bias)  # [I, out]
        return (users.unsqueeze(1) + items.unsqueeze(0)).reshape(-1, weight.shape[0])

    def materialise(self) -> torch.Tensor:
        """The [U * I, du + di] pair vectors themselves."""
        n_users, n_items = len(self.user_vec), len(self.item_vec)
        grid = torch.cat(
            [
                self.user_vec.unsqueeze(1).expand(-1, n_items, -1),
                self.item_vec.unsqueeze(0).expand(n_users, -1, -1),
            ],
            dim=-1,
        )
        return grid.reshape(n_users * n_items, -1)

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., Any],
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.linear and isinstance(args[0], PairGrid):
            return args[0].linear(*args[1:], **kwargs)

        def plain(value: Any) -> Any:
            if isinstance(value, PairGrid):
                return value.materialise()
            if isinstance(value, list | tuple):  # torch.cat([grid, ...]) and the like
                return type(value)(map(plain, value))
            return value

        return func(*map(plain, args), **{k: plain(v) for k, v in kwargs.items()})
