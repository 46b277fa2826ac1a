"""Pipeline stages, in run order. Each is ``run(params)``; ``python -m mtrec <stage>`` calls it.

``transfer`` and ``curve`` also take one item (a strategy, a train fraction): ``dvc.yaml`` runs
them once per item with ``foreach``; without an item they run every item in turn.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

STAGES = (
    "ingest",
    "validate",
    "preprocess",
    "pretrain",
    "transfer",
    "evaluate",
    "curve",
    "report",
    "register",
)

# Run after the pipeline, from the registry (`dvc repro` runs it last; the training DAG
# does not, so a run that promotes nothing never fails for want of a champion).
SERVING_STAGES = ("recommend",)

ITEM_STAGES = ("transfer", "curve")


def stage_runner(name: str) -> Callable[..., None]:
    """The ``run`` function of a stage (imported lazily: stages pull in heavy libraries)."""
    if name not in STAGES + SERVING_STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES + SERVING_STAGES)}")
    return importlib.import_module(f"mtrec.stages.{name}").run
