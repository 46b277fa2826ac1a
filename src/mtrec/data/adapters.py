"""Dataset adapters by ``data.dataset``: each reads its raw files into the canonical tables.

Everything dataset-specific lives in its adapter; from the canonical tables on, every dataset
runs the same stages (see docs/data.md for the schema).
"""

from __future__ import annotations

from collections.abc import Callable

from mtrec.config import DataConfig
from mtrec.data.amazon import load_amazon
from mtrec.data.canonical import CanonicalTables
from mtrec.data.files import load_files
from mtrec.data.mind import load_mind
from mtrec.data.movielens import RELEASES, load_movielens

ADAPTERS: dict[str, Callable[[DataConfig], CanonicalTables]] = {
    **dict.fromkeys(RELEASES, load_movielens),
    "amazon-disencdr": load_amazon,
    "mind": load_mind,
    "files": load_files,
}


def load_dataset(cfg: DataConfig) -> CanonicalTables:
    """The canonical tables of the configured dataset."""
    return ADAPTERS[cfg.dataset](cfg)
