import torch

from mtrec.core.shared_bottom import SharedBottom

from .helpers import tiny_model


def test_forward_shapes() -> None:
    model = tiny_model()
    users, items = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    out = model(users, items)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "click": (3,),
        "like": (3,),
        "rating": (3,),
        "category": (3, 4),
    }


def test_score_matrix_equals_pairwise_forward() -> None:
    model = tiny_model().eval()
    users, items = torch.tensor([1, 7]), torch.tensor([3, 4, 9])
    matrix = model.score_matrix(users, items)
    pairwise = model(users.repeat_interleave(3), items.repeat(2))["click"].view(2, 3)
    torch.testing.assert_close(matrix, pairwise.detach())


def test_checkpoint_round_trip(tmp_path) -> None:
    model = tiny_model().eval()
    model.save(tmp_path / "m.pt")
    loaded = SharedBottom.load(tmp_path / "m.pt").eval()
    assert loaded.spec == model.spec
    users, items = torch.tensor([1, 2]), torch.tensor([3, 4])
    torch.testing.assert_close(loaded(users, items)["click"], model(users, items)["click"])
