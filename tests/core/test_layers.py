"""The CPU dropout (a Bernoulli(1 - p) mask, inverted scaling, seeded, identity in eval) and
the MLPs' BatchNorm."""

import pytest
import torch
import torch.nn.functional as F

from mtrec.core.layers import BatchNorm, dropout, mlp

N = 1 << 20


def drop_rate(y: torch.Tensor) -> float:
    return (y == 0).float().mean().item()


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_rate_and_mean_match_p(p) -> None:
    torch.manual_seed(0)
    y = dropout(torch.ones(N), p, training=True)
    # Binomial std of the rate over 2^20 draws is <= 0.0005: 0.003 is six of them.
    assert drop_rate(y) == pytest.approx(p, abs=0.003)
    assert y.unique().tolist() == [0.0, pytest.approx(1 / (1 - p), rel=1e-4)]
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)


def test_every_16_bit_slice_of_a_draw_is_uniform() -> None:
    # Each 64-bit draw feeds four neighbouring elements; the fourth's slice holds the draw's
    # top bit, which random_() without a range leaves 0. Every position must drop at rate p.
    torch.manual_seed(1)
    y = dropout(torch.ones(N), 0.25, training=True).view(-1, 4)
    for position in range(4):
        assert drop_rate(y[:, position]) == pytest.approx(0.25, abs=0.005)


def test_neighbouring_elements_are_independent() -> None:
    torch.manual_seed(2)
    dropped = dropout(torch.ones(N), 0.5, training=True).view(-1, 2) == 0
    both = (dropped[:, 0] & dropped[:, 1]).float().mean().item()
    assert both == pytest.approx(0.25, abs=0.004)


def test_seeded_runs_repeat_and_differ_between_calls() -> None:
    x = torch.randn(64, 32)
    torch.manual_seed(3)
    first, second = dropout(x, 0.3, True), dropout(x, 0.3, True)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.3, True), first)
    assert not torch.equal(first, second)


def test_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(4)
    x = torch.randn(256, 16, requires_grad=True)
    y = dropout(x, 0.2, True)
    y.sum().backward()
    # The scale is 1 / P(keep) for p rounded to 2^-16: 1 / 0.8 within 1e-4.
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.8, rtol=1e-4, atol=0)


def test_eval_and_edge_probabilities_are_torchs() -> None:
    x = torch.randn(8, 8)
    assert torch.equal(dropout(x, 0.3, training=False), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)
    assert torch.equal(dropout(x, 1.0, training=True), F.dropout(x, 1.0, True))


def test_non_contiguous_input_keeps_its_shape() -> None:
    x = torch.randn(32, 48).t()
    y = dropout(x, 0.5, True)
    assert y.shape == x.shape and torch.equal(y[y != 0], (x * 2)[y != 0])


def test_batch_norm_follows_every_hidden_linear_layer() -> None:
    layers = [type(m).__name__ for m in mlp(4, [8, 6], 0.1, out_dim=1, batch_norm=True)]
    assert layers == [
        *("Linear", "BatchNorm", "ReLU", "Dropout"),
        *("Linear", "BatchNorm", "ReLU", "Dropout"),
        "Linear",
    ]
    assert "BatchNorm" not in [type(m).__name__ for m in mlp(4, [8], 0.1, out_dim=1)]


def test_batch_norm_trains_on_batch_statistics_and_keeps_running_ones_for_one_row() -> None:
    norm = BatchNorm(3).train()
    x = torch.randn(64, 3) * 4 + 2
    y = norm(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    assert norm.num_batches_tracked == 1 and norm.running_mean.abs().sum() > 0
    before = norm.running_mean.clone(), norm.running_var.clone()
    row = torch.randn(1, 3)
    expected = (row - before[0]) / torch.sqrt(before[1] + norm.eps)
    torch.testing.assert_close(norm(row), expected)  # one row: no batch variance to use
    assert torch.equal(norm.running_mean, before[0]) and torch.equal(norm.running_var, before[1])


def test_frozen_batch_norm_keeps_its_statistics_in_training() -> None:
    norm = BatchNorm(3).train()
    norm(torch.randn(64, 3) * 4 + 2)
    norm.requires_grad_(False)
    before = norm.running_mean.clone(), norm.running_var.clone()
    x = torch.randn(64, 3) - 5
    torch.testing.assert_close(norm(x), norm.eval()(x))
    norm.train()(x)
    assert torch.equal(norm.running_mean, before[0]) and torch.equal(norm.running_var, before[1])
