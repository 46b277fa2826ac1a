import pytest
import torch

from mtrec.core.batches import TensorBatches


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
