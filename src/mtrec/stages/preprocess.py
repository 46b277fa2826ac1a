"""Stage ``preprocess``: validated canonical tables -> model-ready tables (``paths.processed``)."""

from __future__ import annotations

from mtrec.config import Params
from mtrec.data.canonical import CanonicalTables
from mtrec.data.preprocess import preprocess
from mtrec.errors import DataValidationError
from mtrec.io import read_json, write_tables
from mtrec.stages.validate import REPORT


def run(params: Params) -> None:
    """Refuse data the gate did not pass, then clean, encode, split and sample negatives."""
    gate = params.paths.report(REPORT)
    if not gate.exists() or not read_json(gate)["success"]:
        raise DataValidationError(f"{gate}: the data gate has not passed; run the validate stage")
    out = preprocess(
        CanonicalTables.load(params.paths.interim),
        params.target,
        params.preprocess,
        params.protocol,
    )
    write_tables(params.paths.processed, out.tables(), out.meta)
