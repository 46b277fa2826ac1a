"""Stage ``ingest``: the configured dataset -> canonical tables (``paths.interim``)."""

from __future__ import annotations

import logging

from mtrec.config import Params
from mtrec.data.adapters import load_dataset

log = logging.getLogger(__name__)


def run(params: Params) -> None:
    """Read the dataset with its adapter and write the canonical tables."""
    tables = load_dataset(params.data)
    tables.save(params.paths.interim)
    log.info(
        "ingested %s -> %s: %s",
        params.data.dataset,
        params.paths.interim,
        {k: len(v) for k, v in tables.frames().items()},
    )
