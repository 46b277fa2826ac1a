"""The data gate: the Great Expectations suites in ``gx/`` run over the canonical tables.

The suites are files in a GX file context (``gx/expectations/*.json``, each expectation noting
the risk it covers); values that depend on the data (rating scale, the catalogue's items, the
last accepted profile) are suite parameters filled in here. A failure names the raw file, its
column, the rule and how many rows broke it, with a few example values.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mtrec.config import VolumeTolerance
from mtrec.data.canonical import CanonicalTables
from mtrec.data.movielens import RELEASES
from mtrec.io import atomic_path

log = logging.getLogger(__name__)

# Suite name -> canonical table it reads (item_genres is a view of items, one row per genre).
SUITES = {
    "interactions": "interactions",
    "items": "items",
    "item_genres": "items",
    "users": "users",
}
VOLUME_SUITES = {"interactions_volume": "interactions", "users_volume": "users"}
# What a MovieLens release's README states beyond the canonical schema (rating grid, id format).
MOVIELENS_SUITE = "movielens"
READ = "read"  # the suite name of what reading the raw files found (encoding, malformed lines)
_AGGREGATES = {"expect_table_row_count_to_be_between", "expect_column_mean_to_be_between"}


@dataclass(frozen=True)
class Failure:
    """One failed expectation, located in the raw data."""

    suite: str
    file: str
    column: str
    rule: str
    count: int | None
    rows: int
    examples: list[str] = field(default_factory=list)
    observed: str | None = None

    def describe(self) -> str:
        """One line an operator can act on."""
        if self.suite == READ:  # a property of the file, in its own words
            examples = f", e.g. {', '.join(self.examples)}" if self.examples else ""
            lines = f"{self.count} line{'s' if self.count != 1 else ''}"
            return f"{self.file}: {self.rule} ({lines}{examples})"
        if self.rule.startswith("expect_column_to_exist"):
            what = "the column is missing"
        elif self.observed is not None:
            what = f"observed {self.observed}"
        else:
            what = f"{self.count} of {self.rows} rows"
        examples = f", e.g. {self.examples}" if self.examples else ""
        column = f"column '{self.column}'" if self.column else "whole table"
        return f"{self.file}, {column}: {self.rule} failed ({what}{examples})"


@dataclass
class ValidationReport:
    """Outcome of the data gate, plus the profile that becomes the next baseline."""

    success: bool
    expectations: int
    failures: list[Failure]
    rows: dict[str, int]
    profile: dict[str, float]
    volume_checked: bool

    def summary(self) -> str:
        """Readable multi-line summary listing every failed expectation."""
        volume = "" if self.volume_checked else " (no accepted baseline yet: volume not checked)"
        if self.success:
            return f"data gate passed: {self.expectations} expectations on {self.rows}{volume}"
        lines = [f"data gate FAILED: {len(self.failures)} of {self.expectations} expectations"]
        lines += [f"  - {f.describe()}" for f in self.failures]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the stage's report file)."""
        return asdict(self)


def profile(tables: CanonicalTables) -> dict[str, float]:
    """The numbers later data is compared with (volume and distribution)."""
    inter = tables.interactions
    numeric = pd.to_numeric(inter.get("rating", pd.Series(dtype=float)), errors="coerce")
    return {
        "interactions": float(len(inter)),
        "rating_mean": float(numeric.mean()) if len(numeric) else 0.0,
        "like_rate": float(inter["like"].mean()) if "like" in inter and len(inter) else 0.0,
        "items_per_user": float(tables.users["activity"].mean()) if len(tables.users) else 0.0,
    }


def _suite_frames(
    tables: CanonicalTables, with_volume: bool
) -> dict[str, tuple[str, pd.DataFrame]]:
    """suite -> (canonical table it reports against, frame it validates)."""
    items = tables.items
    genres = (
        items[["item", "categories"]]
        .explode("categories")
        .dropna()
        .rename(columns={"categories": "genre"})
        if "categories" in items
        else pd.DataFrame({"item": [], "genre": []})
    )
    frames = tables.frames() | {"item_genres": genres}
    suites = SUITES | (VOLUME_SUITES if with_volume else {})
    if tables.dataset in RELEASES:
        suites |= {MOVIELENS_SUITE: "interactions"}
    return {
        suite: (table, frames[suite] if suite in frames else frames[table])
        for suite, table in suites.items()
    }


def _parameters(
    tables: CanonicalTables, baseline: dict | None, tolerance: VolumeTolerance
) -> dict[str, Any]:
    low, high = tables.rating_scale
    params: dict[str, Any] = {
        "rating_min": low,
        "rating_max": high,
        "now": int(time.time()),
        "known_items": tables.items["item"].dropna().unique().tolist()
        if "item" in tables.items
        else [],
        "known_genres": list(tables.known_genres),
    }
    if tables.dataset in RELEASES:
        params["rating_grid"] = RELEASES[tables.dataset].rating_grid()
    if baseline:
        rows = baseline["interactions"]
        ipu = baseline["items_per_user"]
        params |= {
            "rows_min": int(rows * (1 - tolerance.rows)),
            "rows_max": int(rows * (1 + tolerance.rows)),
            "rating_mean_min": baseline["rating_mean"] - tolerance.rating_mean,
            "rating_mean_max": baseline["rating_mean"] + tolerance.rating_mean,
            "like_rate_min": baseline["like_rate"] - tolerance.like_rate,
            "like_rate_max": baseline["like_rate"] + tolerance.like_rate,
            "items_per_user_min": ipu * (1 - tolerance.items_per_user),
            "items_per_user_max": ipu * (1 + tolerance.items_per_user),
        }
    return params


def _failure(
    suite: str, table: str, tables: CanonicalTables, result: Any, rows: int, examples: int
) -> Failure:
    config, detail = result.expectation_config, result.result or {}
    kwargs = config.kwargs
    columns = kwargs.get("column_list") or ([kwargs["column"]] if "column" in kwargs else [])
    source = tables.sources[table]
    rule = config.type
    bounds = {k: kwargs[k] for k in ("min_value", "max_value") if kwargs.get(k) is not None}
    if bounds and not isinstance(next(iter(bounds.values())), dict):
        rule += " " + ", ".join(f"{k.split('_')[0]} {_number(v)}" for k, v in bounds.items())
    observed = None
    if config.type in _AGGREGATES:
        value = detail.get("observed_value")
        observed = "nothing (no rows)" if value is None else _number(value)
    return Failure(
        suite=suite,
        file=os.path.basename(source.file),
        column=",".join(source.source_column(c) for c in columns),
        rule=rule,
        count=detail.get("unexpected_count"),
        rows=rows,
        examples=[str(e) for e in (detail.get("partial_unexpected_list") or [])[:examples]],
        observed=observed,
    )


def _number(value: float) -> str:
    """Counts with thousands separators, other numbers to four significant digits."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def _explained(frame: pd.DataFrame, result: Any, parameters: dict[str, Any]) -> bool:
    """A rule that fails because its column is missing or not numeric is a consequence of a
    failure reported once already (missing column, wrong dtype): a rule that raised, or a
    numeric value set checked against a column of text (every row would "fail" it)."""
    kwargs = result.expectation_config.kwargs
    columns = kwargs.get("column_list") or [kwargs.get("column")]
    info = result.exception_info or {}
    # GX nests exception details per metric when a rule needs several metrics.
    raised = info.get("raised_exception") or any(
        isinstance(v, dict) and v.get("raised_exception") for v in info.values()
    )
    if raised:
        return any(
            c is not None and (c not in frame or not pd.api.types.is_numeric_dtype(frame[c]))
            for c in columns
        )
    if result.expectation_config.type == "expect_column_values_to_be_in_set":
        values = kwargs["value_set"]
        if isinstance(values, dict):
            values = parameters.get(values.get("$PARAMETER"), [])
        numeric = bool(values) and all(isinstance(v, int | float) for v in values)
        column = kwargs["column"]
        return numeric and column in frame and not pd.api.types.is_numeric_dtype(frame[column])
    return False


def validate_tables(
    tables: CanonicalTables,
    gx_root: str | Path,
    baseline: dict | None,
    tolerance: VolumeTolerance,
    examples: int = 5,
    docs_dir: str | Path | None = None,
) -> ValidationReport:
    """Run every suite (and the volume suites when there is a baseline); build Data Docs into
    ``docs_dir`` when given. Returns the report: raising is the caller's decision."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    start = time.perf_counter()
    context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    parameters = _parameters(tables, baseline, tolerance)
    failures = [
        Failure(READ, issue.file, "", issue.rule, issue.count, issue.count, issue.examples)
        for issue in tables.parse_issues
    ]
    n_expectations = len(failures)
    for suite, (table, frame) in _suite_frames(tables, bool(baseline)).items():
        result = context.validation_definitions.get(suite).run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=parameters,
            result_format="SUMMARY",
        )
        n_expectations += len(result.results)
        failures += [
            _failure(suite, table, tables, r, len(frame), examples)
            for r in result.results
            if not r.success and not _explained(frame, r, parameters)
        ]
    if docs_dir is not None:
        context.build_data_docs()
        site = Path(context.root_directory) / "uncommitted" / "data_docs" / "local_site"
        with atomic_path(docs_dir) as tmp:
            shutil.copytree(site, tmp)
    report = ValidationReport(
        success=not failures,
        expectations=n_expectations,
        failures=failures,
        rows={k: len(v) for k, v in tables.frames().items()},
        profile=profile(tables),
        volume_checked=bool(baseline),
    )
    # The wall time goes to the log, not the report: the report is a DVC dependency of
    # preprocess and must not change when the data did not.
    log.info("%s (%.1f s)", report.summary(), time.perf_counter() - start)
    return report
