import pytest
import torch

from mtrec.core.transfer import get_strategy

from .helpers import tiny_model


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
