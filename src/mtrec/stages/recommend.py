"""Stage ``recommend``: batch top-K recommendations for every user, from ``@champion``.

It serves what the registry serves: the registered pyfunc (``mtrec.serving``) loaded by the
version behind ``serving.alias``, so seen items are excluded and unknown users get the popular
items exactly as ``mlflow models serve`` would answer. Users are those of the processed data.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pandas as pd

from mtrec.config import Params, registry_config
from mtrec.io import write_atomic, write_json
from mtrec.registry import Registry
from mtrec.stages.modeling import load_processed

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

log = logging.getLogger(__name__)

REPORT = "recommend.json"
_USERS_PER_CALL = 1024  # bounds the score matrix held at once


def recommend(model: PyFuncModel, users: list[int], k: int) -> pd.DataFrame:
    """Top-``k`` rows per user from a loaded pyfunc, in blocks of users."""
    blocks = [
        model.predict(pd.DataFrame({"user": users[i : i + _USERS_PER_CALL]}), params={"k": k})
        for i in range(0, len(users), _USERS_PER_CALL)
    ]
    return pd.concat(blocks, ignore_index=True)


def run(params: Params) -> None:
    """Score every processed user with the aliased version; write parquet and a summary."""
    from mtrec.serving import load_recommender

    cfg = params.serving
    registry = registry_config(params)
    name = registry.model_name
    version = Registry(registry).alias_version(cfg.alias)
    # Load by number, not alias, so the report names exactly what produced the table.
    model = load_recommender(f"models:/{name}/{version}")
    users = sorted(load_processed(params).users["user"].tolist())
    recs = recommend(model, users, cfg.k)
    write_atomic(cfg.output, lambda tmp: recs.to_parquet(tmp, index=False))
    write_json(
        params.paths.report(REPORT),
        {
            "model": f"models:/{name}@{cfg.alias}",
            "version": version,
            "k": cfg.k,
            "users": len(users),
            "rows": len(recs),
            "output": cfg.output,
        },
    )
    log.info(
        "%s v%s (@%s): top-%d for %d users -> %s",
        name,
        version,
        cfg.alias,
        cfg.k,
        len(users),
        cfg.output,
    )
