"""The encoder options of the shared bottom (text CNN, the user-history Transformer, LM items)
and the pair's layout."""

from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from mtrec.core.layers import TextBag, TextCNN
from mtrec.core.losses import RankingLoss
from mtrec.core.models import ARCHITECTURES, load_model
from mtrec.core.multitask import spec_from_dict
from mtrec.core.trainer import fit
from mtrec.core.transfer import get_strategy

from .helpers import SYNTHETIC_TRAINING, click_steps, learnable_rows, tiny_model

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


def test_text_bag_ragged_cpu_path_equals_the_padded_bag() -> None:
    # The CPU path drops the padding before the bag; the result and the gradient must be the
    # padded embedding_bag's (what CUDA runs), padding anywhere, empty rows included.
    torch.manual_seed(0)
    bag = TextBag(50, 8)
    tokens = torch.randint(0, 50, (64, 7))
    tokens[::5] = 0
    ragged = bag(tokens)
    ragged.square().sum().backward()
    ragged_grad = bag.embedding.weight.grad.clone()
    bag.embedding.weight.grad = None
    padded = F.embedding_bag(tokens, bag.embedding.weight, mode="mean", padding_idx=0)
    padded.square().sum().backward()
    torch.testing.assert_close(ragged, padded)
    torch.testing.assert_close(ragged_grad, bag.embedding.weight.grad)
    assert torch.equal(ragged[::5], torch.zeros(13, 8))


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


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_data_without_genres_or_item_features_gets_no_slot_for_them(architecture) -> None:
    d = 8
    plain = tiny_model(architecture=architecture, n_genres=0, n_item_features=0)
    assert plain.encoder.out_dim == 3 * d
    assert plain.encoder.genre is None and plain.encoder.item_side is None
    assert tiny_model(n_genres=0).encoder.out_dim == tiny_model(n_item_features=0).encoder.out_dim
    assert tiny_model(n_item_features=0).encoder.out_dim == 4 * d
    assert tiny_model().encoder.out_dim == 5 * d
    users, items = torch.tensor([1, 7]), torch.tensor([3, 4, 9])
    pairwise = plain(users.repeat_interleave(3), items.repeat(2))["click"].view(2, 3)
    torch.testing.assert_close(plain.eval().score_matrix(users, items), pairwise.detach())


def test_a_checkpoint_from_before_the_empty_slots_were_dropped_still_loads(tmp_path) -> None:
    old = tiny_model(n_genres=0, n_item_features=0, constant_slots=True).eval()
    assert old.encoder.out_dim == 5 * 8
    old.save(tmp_path / "old.pt")
    blob = torch.load(tmp_path / "old.pt", weights_only=True)
    del blob["spec"]["constant_slots"]  # as saved before the field existed
    torch.save(blob, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt").eval()
    users, items = torch.tensor([1, 2]), torch.tensor([3, 4])
    torch.testing.assert_close(loaded(users, items)["click"], old(users, items)["click"])
    # With genres and item features the old layout is today's: the specs compare equal
    # (a transfer from an older pretrained checkpoint still matches its target model).
    full = tiny_model()
    raw = {k: v for k, v in asdict(full.spec).items() if k != "constant_slots"}
    assert spec_from_dict(raw) == full.spec


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


@pytest.mark.parametrize("dot_product", [False, True], ids=["mlp", "dot"])
def test_a_rows_own_item_is_never_read_from_the_users_history(dot_product) -> None:
    """Training rows are the user's history: read with the row's item, a model learns to find
    the item there (Amazon Phone: training loss 1.55 by epoch 5, docs/models.md sixth round)."""
    model = tiny_model(history_length=5, dot_product=dot_product).eval()
    ranking = RankingLoss(
        "softmax", 4, torch.zeros(30, dtype=torch.long), torch.tensor([30]), torch.ones(30) / 30
    )
    # One clicked row (user 1, item 4) and the unclicked rows its candidates come from.
    batch = {
        "user": torch.tensor([1, 2, 3]),
        "item": torch.tensor([4, 11, 12]),
        "click": torch.tensor([1.0, 0.0, 0.0]),
    }

    def outputs(history: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        model.encoder.user_history[1] = torch.tensor(history)
        with torch.no_grad():
            return model(batch["user"], batch["item"])["click"][0], ranking(model, batch)

    with_item, without_item, other = (
        outputs([0, 4, 7, 9, 4]),
        outputs([0, 0, 7, 9, 0]),
        outputs([0, 6, 7, 9, 6]),
    )
    torch.testing.assert_close(with_item, without_item)
    assert not torch.allclose(with_item[0], other[0])  # the other items are read
    assert not torch.allclose(with_item[1], other[1])


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


LM = {"item_encoder": "lm", "lm_dim": 6}


def test_lm_projection_trains_while_the_embeddings_stay_bit_identical() -> None:
    model = tiny_model(**LM)
    frozen = model.encoder.item_lm.clone()
    projection = model.encoder.lm.weight.detach().clone()
    assert "encoder.item_lm" not in dict(model.named_parameters())  # a buffer: no optimizer
    click_steps(model, 3)
    assert torch.equal(model.encoder.item_lm, frozen)
    assert not torch.equal(model.encoder.lm.weight, projection)


def test_lm_items_are_their_projected_text_embeddings() -> None:
    model = tiny_model(**LM)
    encoder = model.encoder
    items = torch.tensor([1, 2])
    torch.testing.assert_close(encoder.item_ids(items), encoder.lm(encoder.item_lm[items]))
    encoder.item_lm[2] = encoder.item_lm[1]  # same text, same item vector: ids play no part
    vectors = encoder.item_ids(items)
    assert torch.equal(vectors[0], vectors[1])


@pytest.mark.parametrize("architecture", ["independent", "shared_bottom", "mmoe", "ple", "esmm"])
@pytest.mark.parametrize(
    "strategy", ["scratch", "zero_shot", "frozen", "finetune", "l2sp", "sample_weighted", "joint"]
)
def test_lm_items_combine_with_every_architecture_and_strategy(architecture, strategy) -> None:
    source = tiny_model(seed=1, architecture=architecture, **LM)
    model = get_strategy(strategy, l2sp_strength=0.1).prepare(
        tiny_model(seed=2, architecture=architecture, **LM), source
    )
    # The projection is shared knowledge: it transfers, and feature transfer freezes it.
    assert {"encoder.lm.weight", "encoder.lm.bias"} <= set(model.shared_parameter_names())
    if get_strategy(strategy).needs_source:
        assert torch.equal(model.encoder.lm.weight, source.encoder.lm.weight)
    assert model.encoder.lm.weight.requires_grad == (strategy != "frozen")
    scores = model.eval().score_matrix(torch.tensor([1, 2]), torch.arange(1, 6))
    assert scores.shape == (2, 5) and torch.isfinite(scores).all()


def test_an_lm_model_needs_the_embeddings() -> None:
    encoder = tiny_model(**LM).encoder
    with pytest.raises(ValueError, match="item_lm"):
        encoder.set_side_features(
            encoder.item_tokens, encoder.item_genres, encoder.item_features, encoder.user_features
        )
