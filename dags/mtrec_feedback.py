"""mtrec_feedback: new interaction files -> the data gate -> the dataset -> retraining.

Every ``schedule.feedback`` (params.yaml) it takes the ``*.csv`` files dropped in
``<feedback.root>/incoming/`` (write them elsewhere, then move them in). Each passes the
pipeline's own Great Expectations suites before it is appended to the dataset's raw
interactions (each file alone on the row-level rules, then all of them at once on the whole
store, one replace per run); rejected files go to ``rejected/`` with the reason and fail the
run, so someone looks. When something was appended, ``publish`` emits the asset
``feedback.asset``, which schedules ``mtrec_training``: recommendations -> user feedback ->
retraining; appended files that a failed run did not announce are announced by the next. A
dataset that cannot take feedback, or another expected error, fails the run at once (no
retry). The work is in ``mtrec.feedback``; this file only wires it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Asset, dag, task

from mtrec.config import PARAMS_FILE, load_params

PROJECT_DIR = Path(os.environ.get("MTREC_PROJECT_DIR", Path(__file__).resolve().parents[1]))
SETTINGS = load_params(PROJECT_DIR / PARAMS_FILE)  # a file read at parse time, no DB access
NEW_INTERACTIONS = Asset(SETTINGS.feedback.asset)


@dag(
    dag_id="mtrec_feedback",
    schedule=SETTINGS.schedule.feedback,
    # No start_date (see mtrec_training): no catch-up poll for a tick long past.
    catchup=False,
    max_active_runs=1,  # one writer of the dataset at a time
    tags=["mtrec", "data"],
    doc_md=__doc__,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(minutes=30),
    },
)
def mtrec_feedback() -> None:
    @task
    def ingest() -> dict:
        """Validate, append and file away every incoming file (safe to rerun)."""
        from dataclasses import asdict

        from airflow.sdk.exceptions import AirflowFailException

        from mtrec.errors import MtrecError
        from mtrec.feedback import ingest_feedback

        try:
            return asdict(ingest_feedback(load_params(PROJECT_DIR / PARAMS_FILE), PROJECT_DIR))
        except MtrecError as exc:  # a retry would fail the same way
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    @task(outlets=[NEW_INTERACTIONS])
    def publish(batch: dict, **context) -> None:
        """Emit the asset (and so schedule retraining) when appended interactions are not yet
        announced: this run's, or those of a run that failed after appending."""
        from airflow.sdk.exceptions import AirflowSkipException

        from mtrec.feedback import mark_announced

        if not batch["pending"]:
            raise AirflowSkipException("nothing was appended")
        context["outlet_events"][NEW_INTERACTIONS].extra = {
            "files": [entry["file"] for entry in batch["pending"]],
            "rows": sum(entry["rows"] for entry in batch["pending"]),
        }
        mark_announced(load_params(PROJECT_DIR / PARAMS_FILE), PROJECT_DIR, batch["ledger_entries"])

    @task
    def check_rejections(batch: dict) -> None:
        """Fail the run when a file was rejected, naming the file and the broken rule."""
        from airflow.sdk.exceptions import AirflowFailException

        if batch["rejected"]:
            lines = [f"{name}: {why}" for name, why in batch["rejected"].items()]
            raise AirflowFailException("rejected feedback files:\n" + "\n".join(lines))

    batch = ingest()
    publish(batch)
    check_rejections(batch)


mtrec_feedback()
