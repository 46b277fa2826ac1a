"""The encoder options of the shared bottom: text CNN and the user-history Transformer."""

import pytest
import torch

from mtrec.core.layers import TextBag, TextCNN
from mtrec.core.trainer import fit
from mtrec.core.transfer import get_strategy

from .helpers import SYNTHETIC_TRAINING, learnable_rows, tiny_model

ENCODERS = [
    {"text_encoder": "cnn", "text_kernel": 3},
    {"text_encoder": "cnn", "text_kernel": 2},
    {"history_length": 5, "history_heads": 2},
]


@pytest.mark.parametrize("text", [TextBag(10, 4), TextCNN(10, 4, 3)], ids=["bag", "cnn"])
def test_text_encoders_ignore_padding(text) -> None:
    tokens = torch.tensor([[3, 5, 0, 0], [3, 5, 0, 0]])
    longer = torch.tensor([[3, 5, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    out = text(tokens)
    assert out.shape == (2, 4)
    assert torch.allclose(out[0], text(longer)[0], atol=1e-6)
    assert torch.equal(text(longer)[1], torch.zeros(4))


def test_text_cnn_sees_word_order_and_bag_does_not() -> None:
    torch.manual_seed(0)
    forward, backward = torch.tensor([[1, 2, 3]]), torch.tensor([[3, 2, 1]])
    bag, cnn = TextBag(5, 8), TextCNN(5, 8, 2)
    assert torch.allclose(bag(forward), bag(backward))
    assert not torch.allclose(cnn(forward), cnn(backward))


@pytest.mark.parametrize("encoder", ENCODERS, ids=["cnn3", "cnn2", "history"])
def test_encoder_options_forward_and_rank(encoder) -> None:
    model = tiny_model(**encoder)
    users, items = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    out = model(users, items)
    assert out["click"].shape == (3,) and out["category"].shape == (3, 4)
    assert torch.isfinite(out["click"]).all()  # user 0 has an empty history
    scores = model.eval().score_matrix(users, torch.arange(1, 8))
    torch.testing.assert_close(scores[1, 2], model(users[1:2], torch.tensor([3]))["click"][0])


def test_history_changes_the_user_vector_and_trains() -> None:
    model = tiny_model(history_length=5)
    users = torch.tensor([1, 2])
    before = model.encoder.users(users).detach().clone()
    model.encoder.user_history[1] = 0
    assert not torch.allclose(model.encoder.users(users)[0], before[0])
    assert torch.allclose(model.encoder.users(users)[1], before[1])
    history_weights = {n: p.detach().clone() for n, p in model.named_parameters() if "history" in n}
    assert history_weights
    fit(
        model,
        learnable_rows(400),
        learnable_rows(100, seed=1),
        SYNTHETIC_TRAINING,
        0,
        torch.device("cpu"),
    )
    for name, parameter in model.named_parameters():
        if name in history_weights:
            assert not torch.equal(parameter, history_weights[name]), name


def test_history_transformer_is_shared_knowledge_frozen_under_feature_transfer() -> None:
    source = tiny_model(seed=1, history_length=5)
    model = get_strategy("frozen").prepare(tiny_model(seed=2, history_length=5), source)
    names = model.shared_parameter_names()
    assert any(n.startswith("encoder.history.") for n in names)
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in names)


def test_a_history_model_needs_the_history() -> None:
    model = tiny_model(history_length=5)
    encoder = model.encoder
    with pytest.raises(ValueError, match="user_history"):
        encoder.set_side_features(
            encoder.item_tokens, encoder.item_genres, encoder.item_features, encoder.user_features
        )
