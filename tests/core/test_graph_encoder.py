import pytest
import torch

from mtrec.core import encoder as encoder_module
from mtrec.core.models import ARCHITECTURES, load_model
from mtrec.core.transfer import get_strategy

from .helpers import tiny_model
from .test_graph import _dense_reference


def test_graph_encoder_propagates_the_id_embeddings() -> None:
    model = tiny_model(graph_layers=2).eval()
    encoder = model.encoder
    users, items = encoder.graph_edges
    dense = _dense_reference(users, items, 20, 30).float()
    ego = torch.cat([encoder.user_embedding.weight, encoder.item_embedding.weight])
    expected = (ego + dense @ ego + dense @ dense @ ego) / 3
    user_table, item_table = encoder._id_tables()
    torch.testing.assert_close(torch.cat([user_table, item_table]), expected)
    torch.testing.assert_close(
        encoder.item_ids(torch.tensor([4, 7])), expected[20 + 4 : 20 + 8 : 3]
    )


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_graph_encoder_transfers_the_source_weights(architecture, tmp_path) -> None:
    source = tiny_model(seed=0, architecture=architecture, graph_layers=2)
    target = tiny_model(seed=1, architecture=architecture, graph_layers=2)
    own_edges = target.encoder.graph_edges.clone()
    with torch.no_grad():  # a source that has learned something
        source.encoder.user_embedding.weight.add_(1.0)
    target = get_strategy("finetune").prepare(target, source)
    for name in ("user_embedding.weight", "item_embedding.weight"):
        torch.testing.assert_close(
            target.encoder.state_dict()[name], source.encoder.state_dict()[name]
        )
    # The graph is the target's data (side data), not a transferred weight.
    assert torch.equal(target.encoder.graph_edges, own_edges)
    # Checkpoints carry the graph: the reloaded model scores as the trained one.
    target.eval().save(tmp_path / "model.pt")
    again = load_model(tmp_path / "model.pt").eval()
    users, items = torch.arange(5), torch.arange(30)
    torch.testing.assert_close(again.score_matrix(users, items), target.score_matrix(users, items))


def test_graph_encoder_trains_end_to_end() -> None:
    model = tiny_model(graph_layers=1)
    out = model(torch.tensor([0, 1]), torch.tensor([2, 3]))["click"].sum()
    out.backward()
    # users 0 and 1 reach, through their items, other users' layer-0 embeddings
    assert (model.encoder.user_embedding.weight.grad.abs().sum(1) > 0).sum() > 2


def test_graph_propagation_is_reused_while_current() -> None:
    model = tiny_model(graph_layers=2)
    encoder = model.encoder
    calls = []
    original = encoder_module.propagate

    def counting(*args):
        calls.append(1)
        return original(*args)

    users, items = torch.tensor([0, 1, 2]), torch.tensor([2, 3, 4])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)  # as trainer's
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encoder_module, "propagate", counting)
        for step in range(2):  # users and items twice a step (the forward, a ranking loss)
            loss = model(users, items)["click"].sum()
            grid = model.click_grid(encoder.users(users), encoder.items(items)[0])
            loss = loss + grid.sum()
            optimizer.zero_grad()
            loss.backward()  # one backward through the shared propagation
            optimizer.step()  # new weights: the next step propagates again
            assert len(calls) == step + 1
        with torch.no_grad():  # never the autograd tables in no-grad mode, nor after a step
            user_table, _ = encoder._id_tables()
            assert encoder._id_tables()[0] is not user_table  # train mode: no reuse
            model.eval()
            user_table, _ = encoder._id_tables()
            assert encoder._id_tables()[0] is user_table  # eval mode: reused
        assert len(calls) == 5 and not user_table.requires_grad

    def current() -> torch.Tensor:  # the propagation of the weights as they are now
        ego = torch.cat([encoder.user_embedding.weight, encoder.item_embedding.weight])
        return original(encoder._adjacency, ego, 2)[:20].detach()

    torch.testing.assert_close(user_table, current())
    with torch.no_grad():
        encoder.user_embedding.weight.add_(1.0)  # an in-place change (load_state_dict, a step)
        torch.testing.assert_close(encoder._id_tables()[0], current())
    model.train()  # a training pass (fused Adam changes weights without a version bump)
    with torch.no_grad():
        for p in model.parameters():
            p.data.add_(0.5)  # .data: no version bump either
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder._id_tables()[0], current())
