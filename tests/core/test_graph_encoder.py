import pytest
import torch

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
