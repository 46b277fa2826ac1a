"""mtrec_rollback: move ``@champion`` back to the version it replaced (or a named one).

Who triggered it and the reason given in the form are recorded on both versions (tags
``mtrec.rollback.*`` / ``mtrec.rolled_back`` and the version descriptions). Clearing and
rerunning the task does not roll back a second time. The work is in
``mtrec.registry.rollback_champion``; this file only wires it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Param, dag, task

PROJECT_DIR = Path(os.environ.get("MTREC_PROJECT_DIR", Path(__file__).resolve().parents[1]))


@dag(
    dag_id="mtrec_rollback",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["mtrec", "registry"],
    doc_md=__doc__,
    default_args={
        "retries": 1,  # a registry that was briefly unreachable; impossible requests fail at once
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=10),
    },
    params={
        "reason": Param(
            type="string",
            minLength=3,
            title="Reason",
            description="Why the champion is rolled back; recorded on both model versions.",
        ),
        "version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Version",
            description="Roll back to this version; empty: the champion the current one replaced.",
        ),
    },
)
def mtrec_rollback() -> None:
    @task
    def rollback(**context) -> dict:
        """Move ``@champion`` and record who and why."""
        from dataclasses import asdict

        from airflow.sdk.exceptions import AirflowFailException

        from mtrec.errors import MtrecError
        from mtrec.registry import rollback_champion
        from mtrec.workspace import project_params

        run, form = context["dag_run"], context["params"]
        try:
            done = rollback_champion(
                project_params(PROJECT_DIR).registry,
                reason=form["reason"],
                user=run.triggering_user_name or "unknown",
                request=run.run_id,
                to_version=None if form["version"] is None else str(form["version"]),
            )
        except MtrecError as exc:  # nothing to roll back to: retrying would not help
            raise AirflowFailException(str(exc)) from exc
        return asdict(done)

    rollback()


mtrec_rollback()
