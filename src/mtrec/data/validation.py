"""The data gate: Great Expectations 1.x suites over the canonical tables.

Each expectation is commented with the risk it guards against. A failure names the raw file,
its column, the rule and how many rows broke it, with a few example values.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from mtrec.data.canonical import CanonicalTables

log = logging.getLogger(__name__)

INT_TYPES = ["int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64"]
NUMERIC_TYPES = [*INT_TYPES, "float16", "float32", "float64", "Float32", "Float64"]
REQUIRED = {
    "interactions": ["user", "item", "rating", "timestamp"],
    "items": ["item", "title", "categories"],
    "users": ["user"],
}


@dataclass(frozen=True)
class Failure:
    """One failed expectation, located in the raw data."""

    table: str
    file: str
    column: str
    rule: str
    count: int | None
    rows: int
    examples: list[Any] = field(default_factory=list)

    def describe(self) -> str:
        """One line an operator can act on."""
        count = (
            "the column is missing" if self.count is None else (f"{self.count} of {self.rows} rows")
        )
        examples = f", e.g. {self.examples}" if self.examples else ""
        return f"{self.file}, column '{self.column}': {self.rule} failed ({count}{examples})"


@dataclass
class ValidationReport:
    """Outcome of the data gate."""

    success: bool
    expectations: int
    failures: list[Failure]
    rows: dict[str, int]
    seconds: float

    def summary(self) -> str:
        """Readable multi-line summary listing every failed expectation."""
        if self.success:
            return f"data gate passed: {self.expectations} expectations on {self.rows}"
        lines = [f"data gate FAILED: {len(self.failures)} of {self.expectations} expectations"]
        lines += [f"  - {f.describe()}" for f in self.failures]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the stage's report file)."""
        return asdict(self)


def _expectations(table: str, frame: pd.DataFrame, tables: CanonicalTables) -> list:
    import great_expectations.expectations as gxe

    present = set(frame.columns)
    out: list = [gxe.ExpectColumnToExist(column=c) for c in REQUIRED[table]]  # schema drift

    def has(*cols: str) -> bool:
        return all(c in present for c in cols)

    if table == "interactions":
        low, high = tables.rating_scale
        out += [
            gxe.ExpectColumnValuesToNotBeNull(column=c)  # ids/labels we cannot impute
            for c in REQUIRED[table]
            if c in present
        ]
        if has("user"):
            out.append(gxe.ExpectColumnValuesToBeInTypeList(column="user", type_list=INT_TYPES))
        if has("item"):
            out.append(gxe.ExpectColumnValuesToBeInTypeList(column="item", type_list=INT_TYPES))
        if has("rating"):
            # wrong dtype or a different rating scale would silently skew the like label
            out.append(
                gxe.ExpectColumnValuesToBeInTypeList(column="rating", type_list=NUMERIC_TYPES)
            )
            if pd.api.types.is_numeric_dtype(frame["rating"]):
                out.append(
                    gxe.ExpectColumnValuesToBeBetween(
                        column="rating", min_value=low, max_value=high
                    )
                )
        if has("timestamp"):
            out.append(
                gxe.ExpectColumnValuesToBeInTypeList(column="timestamp", type_list=INT_TYPES)
            )
            if pd.api.types.is_numeric_dtype(frame["timestamp"]):
                # negative or future times break the temporal split (leakage from the future)
                out.append(
                    gxe.ExpectColumnValuesToBeBetween(
                        column="timestamp", min_value=0, max_value=int(time.time())
                    )
                )
        if has("user", "item"):
            # duplicated (user, item) rows would appear in both train and test
            out.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=["user", "item"]))
        if has("item") and "item" in tables.items:
            # interactions with unknown items cannot be featurised
            known = tables.items["item"].dropna().unique().tolist()
            out.append(gxe.ExpectColumnValuesToBeInSet(column="item", value_set=known))
    elif table == "items":
        if has("item"):
            out += [
                gxe.ExpectColumnValuesToNotBeNull(column="item"),
                gxe.ExpectColumnValuesToBeUnique(column="item"),  # one row per item
                gxe.ExpectColumnValuesToBeInTypeList(column="item", type_list=INT_TYPES),
            ]
        if has("title"):
            out.append(gxe.ExpectColumnValuesToNotBeNull(column="title"))  # text encoder input
    elif table == "users" and has("user"):
        out.append(gxe.ExpectColumnValuesToBeUnique(column="user"))
    if not len(frame):
        out.append(gxe.ExpectTableRowCountToBeBetween(min_value=1))  # empty file
    return out


def _failure(table: str, tables: CanonicalTables, result: Any, rows: int, examples: int) -> Failure:
    config = result.expectation_config
    kwargs = config.kwargs
    columns = kwargs.get("column_list") or [kwargs.get("column", "<table>")]
    source = tables.sources[table]
    raw_columns = ",".join(source.source_column(c) for c in columns)
    detail = result.result or {}
    count = detail.get("unexpected_count")
    if config.type == "expect_column_values_to_be_in_type_list":
        count = rows  # GX reports the observed dtype, which applies to every row
        examples_list = [f"dtype {detail.get('observed_value')}"]
    elif config.type == "expect_table_row_count_to_be_between":
        count, examples_list = 0, []
    else:
        examples_list = list(detail.get("partial_unexpected_list") or [])[:examples]
    rule = config.type
    bounds = {k: kwargs[k] for k in ("min_value", "max_value") if kwargs.get(k) is not None}
    if bounds:
        rule += f" {bounds}"
    return Failure(
        table,
        os.path.basename(source.file),
        raw_columns,
        rule,
        None if config.type == "expect_column_to_exist" else count,
        rows,
        [str(e) for e in examples_list],
    )


def validate_tables(tables: CanonicalTables, examples: int = 5) -> ValidationReport:
    """Run every suite; returns the report (raising is the caller's decision)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    start = time.perf_counter()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("canonical")
    failures: list[Failure] = []
    n_expectations = 0
    for name, frame in tables.frames().items():
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in _expectations(name, frame, tables):
            suite.add_expectation(expectation)
        n_expectations += len(suite.expectations)
        batch = (
            source.add_dataframe_asset(name=name)
            .add_batch_definition_whole_dataframe("all")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        result = batch.validate(suite, result_format="SUMMARY")
        failures += [
            _failure(name, tables, r, len(frame), examples) for r in result.results if not r.success
        ]
    report = ValidationReport(
        success=not failures,
        expectations=n_expectations,
        failures=failures,
        rows={k: len(v) for k, v in tables.frames().items()},
        seconds=round(time.perf_counter() - start, 3),
    )
    log.info(report.summary())
    return report
