import pytest
import torch

from mtrec.config import TrainConfig
from mtrec.core.trainer import fit
from mtrec.core.transfer import get_strategy

from .helpers import learnable_rows, tiny_model


def test_finetune_starts_from_every_source_weight() -> None:
    source, target = tiny_model(seed=1), tiny_model(seed=2)
    get_strategy("finetune").prepare(target, source)
    for name, tensor in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[name], tensor, msg=name)


def test_scratch_ignores_the_source() -> None:
    source, target = tiny_model(seed=1), tiny_model(seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    get_strategy("scratch").prepare(target, source)
    assert torch.equal(
        target.encoder.user_embedding.weight, before["encoder.user_embedding.weight"]
    )
    assert not torch.equal(
        target.encoder.user_embedding.weight, source.encoder.user_embedding.weight
    )


def test_finetune_refuses_a_different_architecture() -> None:
    with pytest.raises(ValueError, match="does not match"):
        get_strategy("finetune").prepare(tiny_model(n_items=30), tiny_model(n_items=31))


def test_unknown_strategy_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown transfer strategy 'finetuen'"):
        get_strategy("finetuen")


def test_frozen_keeps_shared_weights_bit_identical_and_trains_the_heads() -> None:
    source = tiny_model(seed=1)
    model = get_strategy("frozen").prepare(tiny_model(seed=2), source)
    shared = set(model.shared_parameter_names())
    assert {"encoder.user_embedding.weight", "encoder.text.embedding.weight"} <= shared
    assert any(n.startswith("bottom.") for n in shared)
    assert not any(n.startswith(("towers.", "encoder.item_embedding")) for n in shared)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train, valid = learnable_rows(500, seed=1), learnable_rows(100, seed=2)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.05, patience=3)
    fit(model, train, valid, cfg, seed=0, device=torch.device("cpu"))
    for name, parameter in model.named_parameters():
        if name in shared:
            assert torch.equal(parameter, before[name]), name
    assert not torch.equal(model.towers["click"][-1].weight, before["towers.click.3.weight"])


def test_l2sp_penalty_is_zero_at_the_source_and_grows_away_from_it() -> None:
    strategy = get_strategy("l2sp", l2sp_strength=0.5)
    model = strategy.prepare(tiny_model(seed=2), tiny_model(seed=1))
    assert strategy.penalty(model).item() == 0.0
    values = []
    for step in (0.1, 0.2, 0.4):
        with torch.no_grad():
            model.encoder.user_embedding.weight.add_(step)
        values.append(strategy.penalty(model).item())
    assert 0.0 < values[0] < values[1] < values[2]
    with torch.no_grad():  # moving a head (not transferred as shared) costs nothing
        model.towers["click"][-1].weight.add_(1.0)
    assert strategy.penalty(model).item() == pytest.approx(values[2])


def test_zero_shot_uses_the_source_as_it_is() -> None:
    strategy = get_strategy("zero_shot")
    source = tiny_model(seed=1)
    model = strategy.prepare(tiny_model(seed=2), source)
    assert not strategy.trains
    assert torch.equal(model.encoder.user_embedding.weight, source.encoder.user_embedding.weight)
