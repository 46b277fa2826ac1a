"""Stage ``validate``: the data gate. Fails the run before any training on bad data."""

from __future__ import annotations

from mtrec.config import Params
from mtrec.data.canonical import CanonicalTables
from mtrec.data.validation import validate_tables
from mtrec.errors import DataValidationError
from mtrec.io import write_json

REPORT = "validation.json"


def run(params: Params) -> None:
    """Validate the canonical tables; write the report; raise if any expectation failed."""
    report = validate_tables(CanonicalTables.load(params.paths.interim), params.validate_.examples)
    write_json(params.paths.report(REPORT), report.to_dict())
    if not report.success:
        raise DataValidationError(report.summary())
