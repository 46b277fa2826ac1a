import pytest
import torch

from mtrec.core.batches import NegativeResampler, TensorBatches


def test_every_row_once_per_epoch_in_a_new_order() -> None:
    cols = {"x": torch.arange(10), "y": torch.arange(10) * 2}
    batches = TensorBatches(cols, 3, shuffle=True, generator=torch.Generator().manual_seed(0))
    epochs = [torch.cat([b["x"] for b in batches]) for _ in range(2)]
    assert len(batches) == 4
    for order in epochs:
        assert sorted(order.tolist()) == list(range(10))
    assert not torch.equal(epochs[0], epochs[1])
    first = next(iter(batches))
    assert torch.equal(first["y"], first["x"] * 2)  # columns stay aligned


def test_mismatched_columns_are_rejected() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        TensorBatches({"x": torch.zeros(3), "y": torch.zeros(4)}, 2)


def test_negatives_are_redrawn_each_epoch_within_their_domain() -> None:
    # items 1-4: domain 0, items 5-9: domain 1; rows alternate positive / negative
    item_domain = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    resample = NegativeResampler(item_domain, [torch.arange(1, 5), torch.arange(5, 10)])
    items = torch.tensor([1, 2, 3, 4, 6, 7, 8, 9] * 50)
    click = torch.tensor([1, 0] * 200)
    cols = {"item": items, "click": click}
    batches = TensorBatches(
        cols, 1000, generator=torch.Generator().manual_seed(0), refresh=resample
    )
    epochs = [next(iter(batches))["item"] for _ in range(2)]
    for drawn in epochs:
        assert torch.equal(drawn[click == 1], items[click == 1])  # positives untouched
        assert torch.equal(item_domain[drawn], item_domain[items])  # same domain as before
    assert not torch.equal(epochs[0][click == 0], epochs[1][click == 0])
    assert set(epochs[0][(click == 0) & (item_domain[items] == 1)].tolist()) == {5, 6, 7, 8, 9}
    assert torch.equal(cols["item"], items)  # the stored columns are not modified
