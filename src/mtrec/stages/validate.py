"""Stage ``validate``: the data gate. Fails the run before any training on bad data.

On success the data's profile becomes the accepted baseline the next run is compared with;
on failure nothing accepted changes. Either way the report and the GX Data Docs are written
and logged to MLflow, so an operator can see what failed without opening the worker's logs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mtrec.config import Params
from mtrec.data.canonical import CanonicalTables
from mtrec.data.validation import validate_tables
from mtrec.errors import DataValidationError
from mtrec.io import read_json, write_json
from mtrec.registry import log_validation

log = logging.getLogger(__name__)

REPORT = "validation.json"
DOCS = "data_docs"
BASELINE = "profile.json"


def run(params: Params) -> None:
    """Validate the canonical tables against the suites and the last accepted profile."""
    baseline_file = Path(params.paths.accepted) / BASELINE
    baseline = read_json(baseline_file) if baseline_file.exists() else None
    report = validate_tables(
        CanonicalTables.load(params.paths.interim),
        params.validate_.gx_root,
        baseline,
        params.validate_.tolerance,
        params.validate_.examples,
        docs_dir=params.paths.report(DOCS),
    )
    write_json(params.paths.report(REPORT), report.to_dict())
    log_validation(params.registry, report.to_dict(), params.paths.report(DOCS))
    if not report.success:
        raise DataValidationError(report.summary())
    write_json(baseline_file, report.profile)
    log.info("accepted profile -> %s", baseline_file)
