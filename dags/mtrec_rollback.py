"""mtrec_rollback: move ``@champion`` back to the version it replaced (or a named one), or
re-admit a version rolled back from. After a rollback the newest run's batch recommendations
are made again from the restored ``@champion``, so serving follows it.

Who triggered it and the reason given in the form are recorded on both versions (tags
``mtrec.rollback.*`` / ``mtrec.rolled_back`` and the version descriptions). A version rolled
back from is never promoted again automatically (the register stage's rollback gate); the
action ``readmit`` with its version clears that mark, recording who and why
(``mtrec.readmitted``). Clearing and rerunning the task does not act twice. The work is in
``mtrec.registry``; this file only wires it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import Param, dag, task

from mtrec.config import PARAMS_FILE, load_params, registered_model_name

PROJECT_DIR = Path(os.environ.get("MTREC_PROJECT_DIR", Path(__file__).resolve().parents[1]))
SETTINGS = load_params(PROJECT_DIR / PARAMS_FILE)  # a file read at parse time, no DB access


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
            description="Why; recorded on the model versions.",
        ),
        "action": Param(
            "rollback",
            type="string",
            enum=["rollback", "readmit"],
            title="Action",
            description="rollback: move @champion back. readmit: let the version below, once "
            "rolled back from, be promoted automatically again (@champion does not move).",
        ),
        "version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Version",
            description="rollback: roll back to this version (empty: the champion the current "
            "one replaced). readmit: the version to re-admit (required).",
        ),
        "model_name": Param(
            registered_model_name(SETTINGS),
            type="string",
            minLength=1,
            title="Registered model",
            description="Each dataset and target domain has its own (the training form shows "
            "a run's).",
        ),
    },
)
def mtrec_rollback() -> None:
    @task
    def rollback(**context) -> dict:
        """Move ``@champion`` and record who and why, or re-admit a version."""
        from dataclasses import asdict

        from airflow.sdk.exceptions import AirflowFailException

        from mtrec.errors import MtrecError
        from mtrec.registry import readmit_version, rollback_champion
        from mtrec.workspace import project_params

        run, form = context["dag_run"], context["params"]
        cfg = project_params(PROJECT_DIR).registry.model_copy(
            update={"model_name": form["model_name"]}
        )
        user = run.triggering_user_name or "unknown"
        version = None if form["version"] is None else str(form["version"])
        try:
            if form["action"] == "readmit":
                if version is None:
                    raise AirflowFailException("readmit needs the version to re-admit")
                note = readmit_version(cfg, version, reason=form["reason"], user=user)
                return {"model_name": cfg.model_name, "readmitted": version, "note": note}
            done = rollback_champion(
                cfg, reason=form["reason"], user=user, request=run.run_id, to_version=version
            )
        except MtrecError as exc:  # nothing to roll back to: retrying would not help
            raise AirflowFailException(str(exc)) from exc
        return asdict(done)

    @task
    def recommend(result: dict) -> str:
        """``dvc repro recommend`` in the newest run workspace of this model, so the served
        recommendations come from the restored ``@champion``; skipped when ``@champion`` did
        not move (readmit) or no run of this model has recommendations to refresh."""
        from airflow.sdk.exceptions import AirflowSkipException

        from mtrec.workspace import run_stage, serving_workspace

        if "readmitted" in result:
            raise AirflowSkipException("readmit does not move @champion: nothing to refresh")
        workspace = serving_workspace(PROJECT_DIR, result["model_name"])
        if workspace is None:
            raise AirflowSkipException(f"no run workspace registered {result['model_name']}")
        run_stage(workspace, "recommend")
        return str(workspace)

    recommend(rollback())


mtrec_rollback()
