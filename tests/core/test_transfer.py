import pytest
import torch

from mtrec.config import TrainConfig
from mtrec.core.batches import MixedBatches
from mtrec.core.importance import importance_weights
from mtrec.core.trainer import fit
from mtrec.core.transfer import get_strategy

from .helpers import learnable_rows, tiny_model


def test_finetune_starts_from_every_source_weight_but_keeps_its_own_side_data() -> None:
    source, target = tiny_model(seed=1), tiny_model(seed=2)
    side_data = {name: b.clone() for name, b in target.named_buffers()}
    get_strategy("finetune").prepare(target, source)
    for name, tensor in source.named_parameters():
        torch.testing.assert_close(dict(target.named_parameters())[name], tensor, msg=name)
    for name, buffer in target.named_buffers():
        assert torch.equal(buffer, side_data[name]), name


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


def test_transfer_carries_batch_norm_statistics_and_frozen_layers_keep_them() -> None:
    source = tiny_model(seed=1, batch_norm=True)
    with torch.no_grad():
        source.train()(torch.arange(20), torch.arange(20))
    model = get_strategy("frozen").prepare(tiny_model(seed=2, batch_norm=True), source)
    shared_norm, tower_norm = "bottom.1.running_mean", "towers.click.1.running_mean"
    assert torch.equal(model.state_dict()[shared_norm], source.state_dict()[shared_norm])
    before = {name: buffer.clone() for name, buffer in model.state_dict().items()}
    train, valid = learnable_rows(500, seed=1), learnable_rows(100, seed=2)
    fit(model, train, valid, TrainConfig(epochs=2, batch_size=64), 0, torch.device("cpu"))
    after = model.state_dict()
    for name in (shared_norm, "bottom.1.running_var", "bottom.1.num_batches_tracked"):
        assert torch.equal(after[name], before[name]), name
    assert not torch.equal(after[tower_norm], before[tower_norm])


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


def test_importance_weights_are_positive_normalised_and_favour_target_like_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    source = torch.randn(4000, 3, generator=gen)
    target = torch.randn(1000, 3, generator=gen) + torch.tensor([1.0, 0.0, 0.0])
    weights = importance_weights(source, target, clip=10.0)
    assert weights.shape == (4000,)
    assert bool((weights > 0).all())
    assert weights.mean().item() == pytest.approx(1.0, abs=1e-5)
    assert weights.max() / weights.min() <= 10.0**2 + 1e-3
    # Density ratio of N(1, 1) over N(0, 1) is exp(x - 1/2): increasing in the first feature.
    order = source[:, 0].argsort()
    low, high = weights[order[:400]].mean(), weights[order[-400:]].mean()
    assert high > 5 * low
    # Identical domains: no row is special.
    flat = importance_weights(source[:2000], source[2000:], clip=10.0)
    assert flat.std().item() < 0.2


def test_joint_draws_source_rows_uniformly_and_sample_weighted_by_importance() -> None:
    model = tiny_model(seed=1)
    target, source = learnable_rows(200, seed=1), learnable_rows(800, seed=2)
    joint = get_strategy("joint")
    assert joint.mixes_source_rows and not joint.needs_source
    assert torch.equal(joint.source_weights(model, target, source, 0), torch.ones(800))
    weighted = get_strategy("sample_weighted", importance_clip=5.0)
    weights = weighted.source_weights(model, target, source, 0)
    assert weights.shape == (800,) and bool((weights > 0).all())
    assert weights.mean().item() == pytest.approx(1.0, abs=1e-5)


def test_mixed_batches_add_ratio_times_the_target_rows_drawn_by_weight() -> None:
    target = {"user": torch.arange(100), "item": torch.zeros(100, dtype=torch.long)}
    source = {"user": torch.arange(1000, 1010), "item": torch.ones(10, dtype=torch.long)}
    weights = torch.tensor([100.0] + [1e-6] * 9)  # nearly every draw is source row 0
    batches = MixedBatches(target, source, weights, ratio=0.5, batch_size=32)
    batches.generator = torch.Generator().manual_seed(0)
    rows = torch.cat([b["user"] for b in batches])
    assert len(rows) == 150 and len(batches) == 5
    assert sorted(rows[rows < 1000].tolist()) == list(range(100))
    drawn = rows[rows >= 1000]
    assert len(drawn) == 50 and (drawn == 1000).sum() >= 48


def test_instance_transfer_trains_on_target_and_source_rows() -> None:
    model = get_strategy("sample_weighted").prepare(tiny_model(seed=2), None)
    target, source = learnable_rows(300, seed=1), learnable_rows(1200, seed=3)
    weights = get_strategy("sample_weighted").source_weights(model, target, source, 0)
    before = model.encoder.user_embedding.weight.detach().clone()
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, patience=2)
    mixed = MixedBatches(target, source, weights, ratio=1.0, batch_size=cfg.batch_size)
    result = fit(model, mixed, learnable_rows(100, seed=4), cfg, 0, torch.device("cpu"))
    assert result.epochs_run == 2
    assert not torch.equal(model.encoder.user_embedding.weight, before)
