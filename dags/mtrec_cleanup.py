"""mtrec_cleanup: keep the newest ``runs.keep`` run workspaces and the DVC cache they use.

Every ``schedule.cleanup`` (params.yaml) it deletes older ``runs/<run>/`` workspaces, then
garbage-collects the shared DVC cache down to what the project's own workspace and the kept
run workspaces use (``dvc gc --workspace --projects``). The work is in ``mtrec.workspace``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import dag, task

from mtrec.config import PARAMS_FILE, load_params

PROJECT_DIR = Path(os.environ.get("MTREC_PROJECT_DIR", Path(__file__).resolve().parents[1]))
SETTINGS = load_params(PROJECT_DIR / PARAMS_FILE)  # a file read at parse time, no DB access


@dag(
    dag_id="mtrec_cleanup",
    schedule=SETTINGS.schedule.cleanup,
    # No start_date (see mtrec_training): no catch-up for a tick long past.
    catchup=False,
    max_active_runs=1,
    tags=["mtrec", "ops"],
    doc_md=__doc__,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(hours=1),
    },
)
def mtrec_cleanup() -> None:
    @task
    def clean_runs() -> dict:
        """Delete old run workspaces and the cache objects nothing kept uses."""
        from mtrec.workspace import clean_runs as clean

        return clean(PROJECT_DIR, load_params(PROJECT_DIR / PARAMS_FILE).runs.keep)

    clean_runs()


mtrec_cleanup()
