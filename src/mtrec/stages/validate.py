"""Stage ``validate``: the data gate. Fails the run before any training on bad data.

Write-audit-publish: ``ingest`` wrote the canonical tables to ``paths.staged``; only when they
pass are they published to ``paths.interim`` (what every later stage reads), the report to
``validation.json`` and the Data Docs to ``data_docs``, and the data's profile becomes the
accepted baseline the next run is compared with. On failure none of these change: the last
good tables and report stay where they were, and the failed run's report and Data Docs are
written beside them (``validation.failed.json``, ``data_docs.failed``). Either way the
verdict is logged to MLflow, so an operator can see what failed without the worker's logs.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from mtrec.config import Params
from mtrec.data.canonical import CanonicalTables
from mtrec.data.validation import validate_tables
from mtrec.errors import DataValidationError
from mtrec.io import atomic_path, read_json, write_json
from mtrec.registry import log_validation

log = logging.getLogger(__name__)

REPORT = "validation.json"
DOCS = "data_docs"
FAILED = "failed"  # suffix of a failed run's report and Data Docs, kept beside the good ones
BASELINE = "profile.json"


def run(params: Params) -> None:
    """Validate the staged tables against the suites and the last accepted profile; publish
    them only if they pass."""
    paths = params.paths
    baseline_file = Path(paths.accepted) / BASELINE
    baseline = read_json(baseline_file) if baseline_file.exists() else None
    with tempfile.TemporaryDirectory(
        dir=paths.reports if Path(paths.reports).exists() else None
    ) as tmp:
        docs = Path(tmp) / DOCS
        report = validate_tables(
            CanonicalTables.load(paths.staged),
            params.validate_.gx_root,
            baseline,
            params.validate_.tolerance,
            params.validate_.examples,
            docs_dir=docs,
        )
        log_validation(params.registry, report.to_dict(), docs)
        if not report.success:
            failed = paths.report(f"{Path(REPORT).stem}.{FAILED}.json")
            write_json(failed, report.to_dict())
            _publish(docs, paths.report(f"{DOCS}.{FAILED}"))
            log.error("failed run's report -> %s (the last good one is unchanged)", failed)
            raise DataValidationError(report.summary())
        _publish(Path(paths.staged), Path(paths.interim))
        _publish(docs, paths.report(DOCS))
    write_json(paths.report(REPORT), report.to_dict())
    write_json(baseline_file, report.profile)
    log.info(
        "published %s -> %s; accepted profile -> %s", paths.staged, paths.interim, baseline_file
    )


def _publish(src: Path, dst: Path) -> None:
    """Replace the directory ``dst`` with a copy of ``src`` in one step."""
    with atomic_path(dst) as tmp:
        shutil.copytree(src, tmp)
