import torch

from mtrec.core.graph import LightGCN, normalized_adjacency, propagate


def _dense_reference(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int
) -> torch.Tensor:
    """D^-1/2 A D^-1/2 built densely, entry by entry."""
    n = n_users + n_items
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        adjacency[u, n_users + i] = adjacency[n_users + i, u] = 1.0
    degree = adjacency.sum(1)
    inv = torch.where(degree > 0, degree.pow(-0.5), 0.0)
    return inv[:, None] * adjacency * inv[None, :]


def test_propagation_equals_dense_reference() -> None:
    # 4 users, 5 items; item 4 is isolated; (0, 1) repeated (counts once).
    users = torch.tensor([0, 0, 0, 1, 2, 2, 3, 0])
    items = torch.tensor([0, 1, 2, 1, 2, 3, 0, 1])
    sparse = normalized_adjacency(users, items, 4, 5)
    dense = _dense_reference(users, items, 4, 5)
    torch.testing.assert_close(sparse.to_dense().double(), dense, rtol=1e-6, atol=1e-7)
    embeddings = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    expected = (
        embeddings.double() + dense @ embeddings.double() + dense @ dense @ embeddings.double()
    ) / 3
    torch.testing.assert_close(
        propagate(sparse, embeddings, layers=2).double(), expected, rtol=1e-5, atol=1e-6
    )
    assert propagate(sparse, embeddings, layers=2)[8].allclose(embeddings[8] / 3)  # isolated


def test_lightgcn_tables_split_users_and_items_and_carry_gradients() -> None:
    users, items = torch.tensor([0, 1, 2]), torch.tensor([1, 0, 1])
    model = LightGCN([normalized_adjacency(users, items, 3, 2)], 3, 2, dim=4, layers=1)
    user_table, item_table = model.tables()
    assert user_table.shape == (3, 4) and item_table.shape == (2, 4)
    (user_table[0] @ item_table[1]).backward()
    # user 0's score reaches, through the graph, the item 1 and the users who share it.
    assert model.user.weight.grad[2].abs().sum() > 0


def test_each_domain_propagates_over_its_own_graph_from_shared_embeddings() -> None:
    # 3 users shared by two domains: items 0-1 are domain 0's, items 2-3 domain 1's.
    users = torch.tensor([0, 1, 2, 0, 1])
    items = torch.tensor([0, 1, 0, 2, 3])
    graphs = [normalized_adjacency(users[:3], items[:3], 3, 4)]
    graphs.append(normalized_adjacency(users[3:], items[3:], 3, 4))
    model = LightGCN(graphs, 3, 4, dim=4, layers=2)
    ego = torch.cat(model.ego())
    for domain, graph in enumerate(graphs):
        expected = propagate(graph, ego, layers=2)
        torch.testing.assert_close(torch.cat(model.tables(domain)), expected)
    # User 2 has no domain-1 click: over domain 1's graph it keeps its own vector (/ 3), while
    # its layer-0 vector is what domain 0's clicks train.
    user_table, _ = model.tables(1)
    torch.testing.assert_close(user_table[2], model.user.weight[2] / 3)
    (model.tables(1)[0][0] @ model.tables(1)[1][2]).backward()
    assert model.user.weight.grad[0].abs().sum() > 0
    assert model.item.weight.grad[:2].abs().sum() == 0  # domain 0's items: not in that graph
