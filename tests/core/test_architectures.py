"""Every multi-task architecture honours the same contract."""

import pytest
import torch
import torch.nn.functional as F

from mtrec.core.layers import BatchNorm
from mtrec.core.losses import task_losses
from mtrec.core.metrics import auc
from mtrec.core.models import ARCHITECTURES, build_model, load_model
from mtrec.core.pair_grid import PairGrid
from mtrec.core.trainer import fit
from mtrec.core.weighting import StaticWeights

from .helpers import SYNTHETIC_TRAINING, learnable_rows, tiny_model

ALL = sorted(ARCHITECTURES)
USERS, ITEMS = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])


@pytest.mark.parametrize("architecture", ALL)
def test_forward_shapes(architecture) -> None:
    out = tiny_model(architecture=architecture)(USERS, ITEMS)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "click": (3,),
        "like": (3,),
        "rating": (3,),
        "category": (3, 4),
    }


@pytest.mark.parametrize("architecture", ALL)
def test_score_matrix_equals_pairwise_forward(architecture) -> None:
    model = tiny_model(architecture=architecture).eval()
    users, items = torch.tensor([1, 7]), torch.tensor([3, 4, 9])
    pairwise = model(users.repeat_interleave(3), items.repeat(2))["click"].view(2, 3)
    torch.testing.assert_close(model.score_matrix(users, items), pairwise.detach())


@pytest.mark.parametrize("architecture", ALL)
def test_ranking_runs_the_click_head_only(architecture) -> None:
    model = tiny_model(architecture=architecture).eval()
    ran: list[str] = []
    for name, tower in model.towers.items():
        tower.register_forward_hook(lambda *_, name=name: ran.append(name))
    model.score_matrix(torch.tensor([1, 7]), torch.tensor([3, 4, 9]))
    assert ran == ["ctr" if architecture == "esmm" else "click"]
    model(USERS, ITEMS)
    assert len(ran) == 1 + len(model.towers)  # a forward still runs every head


@pytest.mark.parametrize("architecture", ALL)
def test_dot_product_adds_user_item_agreement_to_click(architecture) -> None:
    plain = tiny_model(architecture=architecture).eval()
    dot = tiny_model(architecture=architecture, dot_product=True).eval()
    users, items = torch.tensor([1, 7]), torch.tensor([3, 4, 9])
    d = plain.spec.embedding_dim
    agreement = plain.encoder.users(users) @ plain.encoder.item_ids(items)[:, :d].T
    torch.testing.assert_close(
        dot.score_matrix(users, items), plain.score_matrix(users, items) + agreement
    )
    pairwise = dot(users.repeat_interleave(3), items.repeat(2))["click"].view(2, 3)
    torch.testing.assert_close(dot.score_matrix(users, items), pairwise.detach())


@pytest.mark.parametrize("architecture", ALL)
def test_two_tower_cosine_of_a_content_item_tower_ranks_alone(architecture) -> None:
    spec = {"dot_product": True, "item_tower": "content", "similarity": "cosine"}
    model = tiny_model(architecture=architecture, click_mlp=False, **spec).eval()
    users, items = torch.tensor([1, 7]), torch.tensor([3, 4, 9])
    item_vec, _ = model.encoder.items(items)
    cosines = F.cosine_similarity(
        model.encoder.users(users).unsqueeze(1), model.item_tower(item_vec).unsqueeze(0), dim=-1
    )
    torch.testing.assert_close(model.score_matrix(users, items), cosines)
    pairwise = model(users.repeat_interleave(3), items.repeat(2))["click"].view(2, 3)
    torch.testing.assert_close(pairwise.detach(), cosines)
    # Beside the MLP, the same score is added to the architecture's click logit.
    hybrid = tiny_model(architecture=architecture, **spec).eval()
    mlp = hybrid.task_logits(
        PairGrid(hybrid.encoder.users(users), hybrid.encoder.items(items)[0]), ("click",)
    )["click"].view(2, 3)
    torch.testing.assert_close(hybrid.score_matrix(users, items), mlp + cosines)


@pytest.mark.parametrize("architecture", ALL)
@pytest.mark.parametrize(
    "spec",
    [{}, {"dot_product": True}, {"dot_product": True, "item_tower": "content", "click_mlp": False}],
)
def test_click_rows_equal_the_forward_click(architecture, spec) -> None:
    model = tiny_model(architecture=architecture, batch_norm=True, **spec).eval()
    users, items = torch.tensor([1, 2, 2, 5, 7]), torch.tensor([4, 4, 9, 4, 3])
    expected = model(users, items)["click"].detach()
    torch.testing.assert_close(model.click_rows(users, items), expected)


@pytest.mark.parametrize("dot_product", [False, True], ids=["mlp", "dot"])
def test_click_rows_read_the_users_history_as_the_forward_click_does(dot_product) -> None:
    """The sampled validation scores with click_rows: a scored item in the user's history is
    left out of it there as in forward (as it was in training)."""
    model = tiny_model(history_length=5, dot_product=dot_product).eval()
    model.encoder.user_history[2] = torch.tensor([0, 4, 7, 9, 4])
    users, items = torch.tensor([2, 2, 3]), torch.tensor([4, 9, 4])
    expected = model(users, items)["click"].detach()
    torch.testing.assert_close(model.click_rows(users, items), expected)


def test_retrieval_options_need_the_dot_product() -> None:
    with pytest.raises(ValueError, match="shape dot_product"):
        tiny_model(item_tower="content")


@pytest.mark.parametrize("architecture", ALL)
def test_models_without_the_new_options_initialise_as_before(architecture) -> None:
    # The item tower exists only when asked for: seeded weights of other models are unchanged.
    plain = tiny_model(architecture=architecture)
    assert plain.item_tower is None
    dot = tiny_model(architecture=architecture, dot_product=True)
    for a, b in zip(plain.parameters(), dot.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("architecture", ALL)
def test_checkpoint_round_trip(architecture, tmp_path) -> None:
    model = tiny_model(architecture=architecture).eval()
    model.save(tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt").eval()
    assert type(loaded) is type(model) and loaded.spec == model.spec
    torch.testing.assert_close(loaded(USERS, ITEMS)["like"], model(USERS, ITEMS)["like"])


@pytest.mark.parametrize("architecture", ALL)
def test_batch_norm_models_rank_and_round_trip_with_their_statistics(
    architecture, tmp_path
) -> None:
    model = tiny_model(architecture=architecture, batch_norm=True)
    with torch.no_grad():  # one training pass moves the running statistics off their start
        model.train()(torch.arange(20), torch.arange(20))
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, BatchNorm)]
    assert norms and all(m.num_batches_tracked == 1 for m in norms)
    users, items = torch.tensor([1, 7]), torch.tensor([3, 4, 9])
    pairwise = model(users.repeat_interleave(3), items.repeat(2))["click"].view(2, 3)
    torch.testing.assert_close(model.score_matrix(users, items), pairwise.detach())
    model.save(tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt").eval()
    torch.testing.assert_close(loaded(USERS, ITEMS)["like"], model(USERS, ITEMS)["like"])


@pytest.mark.parametrize("architecture", ALL)
def test_gradients_reach_every_parameter(architecture) -> None:
    model = tiny_model(architecture=architecture)
    rows = learnable_rows(64)
    weights = {"click": 1.0, "like": 1.0, "rating": 1.0, "category": 1.0}
    StaticWeights(weights).combine(
        task_losses(model(rows["user"], rows["item"]), rows, model.item_genres)
    ).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


@pytest.mark.parametrize("architecture", ALL)
def test_each_architecture_learns_a_learnable_problem(architecture) -> None:
    model = tiny_model(architecture=architecture)
    train, valid = learnable_rows(2000, seed=1), learnable_rows(400, seed=2)
    # PLE's stacked gates need the gentler rate to learn parity reliably.
    cfg = SYNTHETIC_TRAINING.model_copy(update={"epochs": 60, "lr": 0.01, "patience": 60})
    fit(model, train, valid, cfg, seed=0, device=torch.device("cpu"))
    model.eval()
    assert auc(model(valid["user"], valid["item"])["click"], valid["click"]) > 0.9


def test_esmm_like_never_exceeds_click() -> None:
    model = tiny_model(architecture="esmm")
    with torch.no_grad():
        for scale in (0.0, 5.0, 50.0):  # extreme logits too
            for p in model.towers.parameters():
                p.add_(torch.randn_like(p) * scale)
            out = model(torch.arange(1, 20), torch.arange(1, 20))
            assert (torch.sigmoid(out["like"]) <= torch.sigmoid(out["click"]) + 1e-6).all()


def test_ple_stacks_the_requested_levels() -> None:
    model = tiny_model(architecture="ple")
    assert len(model.levels) == 2
    assert model.levels[0].shared_gate is not None and model.levels[1].shared_gate is None


@pytest.mark.parametrize("architecture", ALL)
def test_a_task_left_out_of_the_spec_gets_no_head(architecture) -> None:
    full = tiny_model(architecture=architecture)
    lean = tiny_model(architecture=architecture, score_tasks=("click", "like"))
    out = lean(USERS, ITEMS)
    assert set(out) == {"click", "like", "category"}
    n_params = sum(p.numel() for p in lean.parameters())
    assert n_params < sum(p.numel() for p in full.parameters())
    rows = learnable_rows(64)
    lean_cfg = SYNTHETIC_TRAINING.model_copy(
        update={"epochs": 2, "task_weights": {"click": 1.0, "like": 1.0, "rating": 0.0}}
    )
    fit(lean, rows, rows, lean_cfg, seed=0, device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"\['rating'\] are above 0 but the model was built"):
        fit(lean, rows, rows, SYNTHETIC_TRAINING, seed=0, device=torch.device("cpu"))


def test_ple_without_a_task_drops_that_tasks_experts() -> None:
    full = tiny_model(architecture="ple")
    lean = tiny_model(architecture="ple", score_tasks=("click", "like"))
    assert set(lean.levels[0].task_experts) == {"click", "like"}
    assert set(full.levels[0].task_experts) == {"click", "like", "rating"}


def test_score_tasks_must_include_click_and_esmm_needs_like() -> None:
    with pytest.raises(ValueError, match="must include 'click'"):
        tiny_model(score_tasks=("like", "rating"))
    with pytest.raises(ValueError, match="ESMM models click and like"):
        tiny_model(architecture="esmm", score_tasks=("click", "rating"))


def test_unknown_architecture_is_an_error() -> None:
    spec = tiny_model().spec
    with pytest.raises(ValueError, match="unknown architecture 'mmeo'"):
        build_model(type(spec)(**{**spec.__dict__, "architecture": "mmeo"}))
