"""The registered model: an MLflow pyfunc returning top-K target-domain items per user.

``mlflow models serve -m models:/mtrec@champion`` serves it; input is a DataFrame with a
``user`` column of raw user ids; output has one row per (user, rank). Items the user has
already interacted with are never recommended; unknown users get the most popular items.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from mtrec.core.models import load_model
from mtrec.stages.modeling import ProcessedData

DEFAULT_K = 10
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("long", "user")]),
    outputs=Schema(
        [
            ColSpec("long", "user"),
            ColSpec("long", "item"),
            ColSpec("long", "rank"),
            ColSpec("double", "score"),
        ]
    ),
    params=ParamSchema([ParamSpec("k", "long", DEFAULT_K)]),
)


def build_bundle(data: ProcessedData, domain: str, path: str | Path) -> Path:
    """Save what serving needs besides the weights: id maps, candidates, seen items, popularity."""
    inter = data.interactions
    positives = inter[(inter["domain"] == domain) & (inter["click"] == 1)]
    candidates = data.items[data.items["domain"] == domain].sort_values("item_idx")
    popularity = positives["item_idx"].value_counts().reindex(candidates["item_idx"], fill_value=0)
    torch.save(
        {
            "users": dict(
                zip(data.users["user"].tolist(), data.users["user_idx"].tolist(), strict=True)
            ),
            "candidate_idx": candidates["item_idx"].to_numpy(np.int64).tolist(),
            "candidate_raw": candidates["item"].tolist(),
            "seen": positives.groupby("user_idx")["item_idx"].agg(list).to_dict(),
            "popularity": popularity.to_numpy(np.float64).tolist(),
        },
        path,
    )
    return Path(path)


class TopKRecommender(mlflow.pyfunc.PythonModel):
    """Scores every candidate for each requested user with the click head."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model = load_model(context.artifacts["model"]).eval()
        bundle = torch.load(context.artifacts["bundle"], weights_only=True)
        self.users: dict[int, int] = bundle["users"]
        self.candidates = torch.tensor(bundle["candidate_idx"])
        self.raw_items = np.asarray(bundle["candidate_raw"])
        self.popularity = torch.tensor(bundle["popularity"])
        column = {item: col for col, item in enumerate(bundle["candidate_idx"])}
        self.seen = {u: [column[i] for i in items] for u, items in bundle["seen"].items()}

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict | None = None,
    ) -> pd.DataFrame:
        k = int((params or {}).get("k", DEFAULT_K))
        raw_users = model_input["user"].tolist()
        idx = [self.users.get(u, 0) for u in raw_users]
        with torch.no_grad():
            scores = self.model.score_matrix(torch.tensor(idx), self.candidates).double()
        for row, (u, known) in enumerate(zip(idx, raw_users, strict=True)):
            if known not in self.users:
                scores[row] = self.popularity  # cold user: non-personalised fallback
            scores[row, self.seen.get(u, [])] = -torch.inf
        top = torch.topk(scores, min(k, len(self.candidates)), dim=1)
        return pd.DataFrame(
            {
                "user": np.repeat(raw_users, top.indices.shape[1]),
                "item": self.raw_items[top.indices.numpy()].ravel(),
                "rank": np.tile(np.arange(1, top.indices.shape[1] + 1), len(raw_users)),
                "score": top.values.numpy().ravel(),
            }
        )
