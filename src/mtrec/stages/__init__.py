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
    "embed_items",
    "pretrain",
    "transfer",
    "baselines",
    "evaluate",
    "curve",
    "report",
    "register",
)

# Run after the pipeline, from the registry (`dvc repro` runs it last; the training DAG
# does not, so a run that promotes nothing never fails for want of a champion).
SERVING_STAGES = ("recommend",)

ITEM_STAGES = ("transfer", "curve")
# Run by hand, never by dvc repro or the DAG: hyperparameter search.
COMMANDS = ("tune",)


def stage_runner(name: str) -> Callable[..., None]:
    """The ``run`` function of a stage (imported lazily: stages pull in heavy libraries)."""
    known = STAGES + SERVING_STAGES + COMMANDS
    if name not in known:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(known)}")
    return importlib.import_module(f"mtrec.stages.{name}").run
