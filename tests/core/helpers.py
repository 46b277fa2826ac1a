"""Small synthetic models and data for core tests (no files, no pandas)."""

from __future__ import annotations

import torch

from mtrec.config import TrainConfig
from mtrec.core.models import build_model
from mtrec.core.multitask import ModelSpec, MultiTaskModel


def tiny_spec(
    n_users: int = 20, n_items: int = 30, architecture: str = "shared_bottom", **fields: object
) -> ModelSpec:
    """The small spec every core test model starts from (``fields``: other or different spec
    fields)."""
    defaults: dict = {
        "n_tokens": 15,
        "n_genres": 4,
        "n_user_features": 2,
        "n_item_features": 3,
        "max_tokens": 3,
        "embedding_dim": 8,
        "bottom_dims": (16,),
        "tower_dims": (8,),
        "dropout": 0.0,
        "rating_mean": 3.5,
        "n_experts": 2,
        "expert_dims": (8,),
        "levels": 2,
    }
    return ModelSpec(
        n_users=n_users, n_items=n_items, architecture=architecture, **(defaults | fields)
    )


def tiny_model(
    seed: int = 0,
    n_users: int = 20,
    n_items: int = 30,
    architecture: str = "shared_bottom",
    **encoder: object,
) -> MultiTaskModel:
    """A small model of ``architecture`` (``encoder``: other spec fields, e.g. text_encoder)
    with random side data installed."""
    torch.manual_seed(seed)
    spec = tiny_spec(n_users, n_items, architecture, **encoder)
    model = build_model(spec)
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, spec.n_tokens, (n_items, spec.max_tokens), generator=gen)
    genres = (torch.rand(n_items, spec.n_genres, generator=gen) > 0.5).float()
    item_features = torch.randn(n_items, spec.n_item_features, generator=gen)
    user_features = torch.randn(n_users, spec.n_user_features, generator=gen)
    history = None
    if spec.history_length:
        history = torch.randint(0, n_items, (n_users, spec.history_length), generator=gen)
        history[0] = 0  # one user without history
    item_lm = None
    if spec.item_encoder == "lm":
        item_lm = torch.randn(n_items, spec.lm_dim, generator=gen)
    edges = None
    if spec.graph_layers:  # each user's positives: a few random items
        edges = torch.stack(
            [
                torch.arange(n_users).repeat(3),
                torch.randint(0, n_items, (3 * n_users,), generator=gen),
            ]
        )
    model.set_side_features(
        tokens, genres, item_features, user_features, history, item_lm=item_lm, graph_edges=edges
    )
    return model


def learnable_rows(n: int, n_users: int = 20, n_items: int = 30, seed: int = 0) -> dict:
    """click = 1 exactly when user and item share parity: learnable from the embeddings."""
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(1, n_users, (n,), generator=gen)
    items = torch.randint(1, n_items, (n,), generator=gen)
    click = ((users % 2) == (items % 2)).float()
    return {
        "user": users,
        "item": items,
        "click": click,
        "like": click * (items % 3 == 0),
        "rating": click * 4.0,
    }


# Small batches, a high learning rate and the synthetic tasks weighted towards click.
SYNTHETIC_TRAINING = TrainConfig(
    epochs=30,
    batch_size=64,
    lr=0.02,
    patience=30,
    task_weights={"click": 1.0, "like": 0.5, "rating": 0.1, "category": 0.1},
)


def click_steps(model: MultiTaskModel, steps: int, lr: float = 0.05) -> None:
    """A few Adam steps on the click loss of learnable rows (does training move a part?)."""
    rows = learnable_rows(64)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(rows["user"], rows["item"])["click"], rows["click"]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
