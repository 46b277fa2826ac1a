"""The registered model: an MLflow pyfunc returning top-K target-domain items per user.

``python -m mtrec serve`` (``make serve``) serves it over MLflow's REST API after
:func:`load_recommender` has checked it; input is a DataFrame with a ``user`` column of raw user
ids; output has one row per (user, rank). Items the user has
already interacted with are never recommended; unknown users get the most popular items.

A version holds no pickled code: it is logged as a "model from code" (``MODEL_CODE``, which
builds :class:`TopKRecommender` from this package), its weights and serving bundle are tensors
read with ``torch.load(weights_only=True)``. :func:`load_recommender` refuses a version whose
stored code or loader is not exactly that, so a tampered artifact is never run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from mtrec.core.models import load_model
from mtrec.errors import RegistryError

# The file MLflow stores with each version and runs to build the model, and MLflow's loader
# for models from code (the pickle-based one is ``mlflow.pyfunc.model``).
MODEL_CODE = Path(__file__).with_name("recommender.py")
_CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
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


def load_bundle(path: str | Path) -> dict[str, Any]:
    """What serving needs besides the weights (written by the register stage): id maps,
    candidates, seen items, popularity; plain tensors and lists, never pickled objects."""
    return torch.load(path, weights_only=True)


class TopKRecommender(mlflow.pyfunc.PythonModel):
    """Scores every candidate for each requested user with the click head."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model = load_model(context.artifacts["model"]).eval()
        bundle = load_bundle(context.artifacts["bundle"])
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


def check_model_dir(path: Path) -> None:
    """Refuse a downloaded version unless loading it runs exactly :data:`MODEL_CODE`: MLflow's
    model-from-code loader, no extra code paths, the stored code file byte-identical."""
    from mlflow.models import Model

    flavor = Model.load(path).flavors.get("python_function", {})
    code = flavor.get("model_code_path")
    if flavor.get("loader_module") != _CODE_LOADER or not code:
        raise RegistryError(
            f"{path}: not an mtrec model from code (loader {flavor.get('loader_module')!r}, "
            f"code {code!r}); refusing to load a model that would unpickle its class"
        )
    if flavor.get("code"):
        raise RegistryError(f"{path}: the version ships code paths {flavor['code']!r}; refused")
    stored = path / Path(code).name
    if not stored.is_file() or stored.read_bytes() != MODEL_CODE.read_bytes():
        raise RegistryError(
            f"{stored}: the version's model code differs from this package's {MODEL_CODE.name}; "
            "refused (tampered, or logged by another mtrec release: register it again)"
        )


def load_recommender(model_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """Download a version (e.g. ``models:/mtrec/3``), check it (:func:`check_model_dir`),
    then load it; the weights are read with ``weights_only=True`` in ``load_context``."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        check_model_dir(local)
        return mlflow.pyfunc.load_model(str(local))


def serve(model_uri: str, host: str, port: int) -> None:
    """Answer ``POST /invocations`` and ``GET /ping`` as ``mlflow models serve`` does, for a
    version :func:`load_recommender` checked first: ``mlflow models serve`` would load (and
    run the stored code of) any version, a tampered one included."""
    import uvicorn
    from mlflow.pyfunc import scoring_server

    uvicorn.run(scoring_server.init(load_recommender(model_uri)), host=host, port=port)
