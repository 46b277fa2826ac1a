"""The factored pair grid: linear layers without materialised pairs, anything else exact."""

import pytest
import torch

from mtrec.core.models import ARCHITECTURES
from mtrec.core.pair_grid import PairGrid

from .helpers import tiny_model

USERS, ITEMS = torch.randn(3, 4), torch.randn(5, 6)


def pairs() -> torch.Tensor:
    """The grid's pairs built the plain way: user-major [15, 10]."""
    return torch.cat([USERS.repeat_interleave(5, 0), ITEMS.repeat(3, 1)], dim=1)


def test_materialised_grid_is_every_user_item_pair() -> None:
    assert torch.equal(PairGrid(USERS, ITEMS).materialise(), pairs())


@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_linear_over_the_pairs(bias) -> None:
    layer = torch.nn.Linear(10, 7, bias=bias)
    torch.testing.assert_close(layer(PairGrid(USERS, ITEMS)), layer(pairs()))


def test_other_operations_see_the_materialised_pairs() -> None:
    grid = PairGrid(USERS, ITEMS)
    assert torch.equal(torch.relu(grid), torch.relu(pairs()))
    extra = torch.ones(15, 1)
    assert torch.equal(torch.cat([grid, extra], dim=1), torch.cat([pairs(), extra], dim=1))


class FactoredOnly(PairGrid):
    def materialise(self) -> torch.Tensor:
        raise AssertionError("the architecture used the pairs other than through F.linear")


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_architecture_reads_the_pairs_through_linear_layers_only(architecture) -> None:
    # What makes full ranking cheap: no architecture materialises the grid.
    model = tiny_model(architecture=architecture).eval()
    users, items = torch.tensor([1, 7]), torch.tensor([3, 4, 9])
    item_vec, _ = model.encoder.items(items)
    with torch.no_grad():
        logits = model.task_logits(FactoredOnly(model.encoder.users(users), item_vec))
        plain = model.task_logits(PairGrid(model.encoder.users(users), item_vec).materialise())
    for task, value in plain.items():
        torch.testing.assert_close(logits[task], value)
