"""The sentence encoder's top layers fine-tuned inside the model (``model.lm_finetune_layers``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mtrec.core import lm_top
from mtrec.core.models import build_model, load_model
from mtrec.core.multitask import MultiTaskModel
from mtrec.core.trainer import fit
from mtrec.core.transfer import get_strategy
from mtrec.data.embeddings import encode_texts, encode_token_states

from .helpers import SYNTHETIC_TRAINING, click_steps, learnable_rows, tiny_spec

MODEL = "all-MiniLM-L6-v2"
# Shorter than the kept word pieces: no truncation, only the float16 states differ.
TEXTS = [
    "Toy Story (1995). Adventure, Animation, Children. pixar fun",
    "Heat (1995). Action, Crime, Thriller. pacino de niro",
    "Jumanji (1995). Adventure, Children, Fantasy",
]
# A small top (width 8, 2 heads) over random token states, for the training tests.
SMALL = {"lm_dim": 8, "lm_seq_len": 5, "lm_heads": 2, "lm_ffn_dim": 16}


def lm_model(
    seed: int = 0,
    n_items: int = 30,
    n_layers: int = 1,
    states: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    architecture: str = "shared_bottom",
    **lm: int,
) -> MultiTaskModel:
    """A tiny LM-item model with trainable top layers; random token states unless given
    (rows 1.. of the catalogue; row 0, the unknown item, has no tokens)."""
    lm = SMALL | lm
    torch.manual_seed(seed)
    spec = tiny_spec(20, n_items, architecture, item_encoder="lm", lm_layers=n_layers, **lm)
    model = build_model(spec)
    gen = torch.Generator().manual_seed(seed)
    if states is None:
        states = torch.randn(n_items - 1, spec.lm_seq_len, spec.lm_dim, generator=gen)
        lengths = torch.randint(1, spec.lm_seq_len + 1, (n_items - 1, 1), generator=gen)
        mask = torch.arange(spec.lm_seq_len) < lengths
    all_states = torch.zeros(n_items, spec.lm_seq_len, spec.lm_dim, dtype=torch.float16)
    all_mask = torch.zeros(n_items, spec.lm_seq_len, dtype=torch.bool)
    all_states[1 : len(states) + 1], all_mask[1 : len(states) + 1] = states.half(), mask
    model.set_side_features(
        torch.randint(0, spec.n_tokens, (n_items, spec.max_tokens), generator=gen),
        (torch.rand(n_items, spec.n_genres, generator=gen) > 0.5).float(),
        torch.randn(n_items, spec.n_item_features, generator=gen),
        torch.randn(spec.n_users, spec.n_user_features, generator=gen),
        item_lm_states=all_states,
        item_lm_mask=all_mask,
    )
    return model


@pytest.fixture(scope="module")
def packaged() -> dict:
    """The frozen sentence embeddings of TEXTS and their token states for the top 1 and 6
    layers, from the packaged encoder (loaded once per process, offline)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        frozen = torch.from_numpy(encode_texts(TEXTS, MODEL, batch_size=8, device="cpu"))
        tokens = {n: encode_token_states(TEXTS, MODEL, n, 32, 2, "cpu") for n in (1, 6)}
    return {"frozen": frozen, "tokens": tokens}


@pytest.mark.parametrize("n_layers", [1, 6])
def test_untouched_top_layers_reproduce_the_packaged_sentence_embedding(packaged, n_layers) -> None:
    tokens = packaged["tokens"][n_layers]
    assert tokens.states.dtype == torch.float16 and tokens.truncated == 0
    assert tokens.states.shape[1] < 32  # padded to the longest text only
    dims = {"lm_seq_len": tokens.states.shape[1], "lm_dim": tokens.states.shape[2]}
    dims |= {"lm_heads": tokens.heads, "lm_ffn_dim": tokens.ffn_dim}
    model = lm_model(0, len(TEXTS) + 1, n_layers, tokens.states, tokens.mask, **dims)
    model.encoder.lm_top.load_state_dict(tokens.weights)
    # The model's item text vector is the frozen sentence embedding of the same text (the
    # batch repeats an item: each distinct item is encoded once, then gathered).
    items = torch.tensor([3, 1, 2, 3])
    with torch.no_grad():
        vectors = model.eval().encoder.lm_vectors(items)
        item_vec = model.encoder.item_ids(items)
    expected = packaged["frozen"][items - 1]
    torch.testing.assert_close(vectors, expected, atol=5e-4, rtol=0)
    assert torch.nn.functional.cosine_similarity(vectors, expected).min() > 0.9999
    torch.testing.assert_close(item_vec, model.encoder.lm(expected), atol=5e-4, rtol=0)
    # The unknown item (no tokens) is the zero vector, as its frozen embedding is.
    assert torch.equal(model.encoder.lm_vectors(torch.tensor([0])), torch.zeros(1, dims["lm_dim"]))


def test_top_layers_train_while_the_token_states_stay_bit_identical() -> None:
    model = lm_model()
    encoder = model.encoder
    states, mask = encoder.item_lm_states.clone(), encoder.item_lm_mask.clone()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lm_top" in n}
    assert len(before) == 16  # one BERT layer: q, k, v, out, 2 norms, 2 feed-forward
    assert not {"encoder.item_lm_states", "encoder.item_lm_mask"} & set(
        dict(model.named_parameters())
    )  # buffers: no optimizer ever sees them
    click_steps(model, 2)
    assert torch.equal(encoder.item_lm_states, states) and torch.equal(encoder.item_lm_mask, mask)
    for name, parameter in model.named_parameters():
        if name in before:
            assert not torch.equal(parameter, before[name]), name


def test_checkpoint_round_trips(tmp_path) -> None:
    model = lm_model(n_layers=2).eval()
    model.save(tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt").eval()
    assert loaded.spec == model.spec and loaded.spec.lm_layers == 2
    assert loaded.encoder.item_lm_states.dtype == torch.float16
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    users, items = torch.tensor([1, 2, 3]), torch.arange(1, 30)
    torch.testing.assert_close(
        loaded.score_matrix(users, items), model.score_matrix(users, items), atol=0, rtol=0
    )


def test_chunked_scoring_and_history_shaped_batches_match_one_pass(monkeypatch) -> None:
    encoder = lm_model().eval().encoder
    items = torch.tensor([[4, 2, 0], [2, 7, 4]])  # a [users, history] block, item 0 padding
    expected = encoder.lm_vectors(items.flatten()).view(2, 3, -1)  # with grad: one pass
    monkeypatch.setattr(lm_top, "ITEMS_PER_CHUNK", 2)
    with torch.no_grad():
        chunked = encoder.lm_vectors(items)
    torch.testing.assert_close(chunked, expected.detach(), atol=1e-6, rtol=0)
    assert torch.equal(chunked[0, 1], chunked[1, 0])  # the same item, the same vector


@pytest.mark.parametrize("architecture", ["shared_bottom", "ple"])
@pytest.mark.parametrize("strategy", ["frozen", "finetune", "l2sp"])
def test_top_layers_are_shared_knowledge_and_transfer(architecture, strategy) -> None:
    source = lm_model(seed=1, architecture=architecture)
    model = get_strategy(strategy, l2sp_strength=0.1).prepare(
        lm_model(seed=2, architecture=architecture), source
    )
    shared = set(model.shared_parameter_names())
    top = {n for n, _ in model.named_parameters() if n.startswith("encoder.lm_top.")}
    assert top and top <= shared
    for name, parameter in model.named_parameters():
        if name in top:
            assert torch.equal(parameter, dict(source.named_parameters())[name])
            assert parameter.requires_grad == (strategy != "frozen")
    scores = model.eval().score_matrix(torch.tensor([1, 2]), torch.arange(1, 6))
    assert scores.shape == (2, 5) and torch.isfinite(scores).all()


def test_a_fine_tuned_lm_model_needs_the_token_states() -> None:
    encoder = lm_model().encoder
    with pytest.raises(ValueError, match="item_lm_states"):
        encoder.set_side_features(
            encoder.item_tokens,
            encoder.item_genres,
            encoder.item_features,
            encoder.user_features,
            item_lm=torch.zeros(30, 8),
        )


def test_only_the_lm_encoder_has_layers_to_fine_tune() -> None:
    spec = lm_model().spec
    with pytest.raises(ValueError, match="only lm has layers"):
        build_model(replace(spec, item_encoder="id"))


def test_fit_trains_the_top_layers_at_their_own_rate() -> None:
    # lm_lr far below lr: Adam's step is ~lr per parameter, so the top layers barely move
    # while the rest of the model trains at lr.
    model = lm_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = learnable_rows(64)
    cfg = SYNTHETIC_TRAINING.model_copy(update={"epochs": 1, "lr": 0.01, "lm_lr": 1e-7})
    fit(model, rows, rows, cfg, seed=0, device=torch.device("cpu"))
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    top = [v for n, v in moved.items() if n.startswith("encoder.lm_top.")]
    assert top and max(top) < 1e-5
    assert moved["encoder.lm.weight"] > 1e-3
