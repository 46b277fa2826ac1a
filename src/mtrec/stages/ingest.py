"""Stage ``ingest``: the configured dataset -> canonical tables awaiting the data gate
(``paths.staged``; ``validate`` publishes them to ``paths.interim`` if they pass)."""

from __future__ import annotations

import logging

from mtrec.config import Params
from mtrec.data.adapters import load_dataset

log = logging.getLogger(__name__)


def run(params: Params) -> None:
    """Read the dataset with its adapter and write the canonical tables."""
    tables = load_dataset(params.data)
    tables.save(params.paths.staged)
    log.info(
        "ingested %s -> %s: %s",
        params.data.dataset,
        params.paths.staged,
        {k: len(v) for k, v in tables.frames().items()},
    )
