"""Pipeline stages, in run order. Each is ``run(params)``; ``python -m mtrec <stage>`` calls it."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from mtrec.config import Params

STAGES = ("ingest", "validate", "preprocess", "pretrain", "transfer", "evaluate", "register")


def stage_runner(name: str) -> Callable[[Params], None]:
    """The ``run`` function of a stage (imported lazily: stages pull in heavy libraries)."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    return importlib.import_module(f"mtrec.stages.{name}").run
