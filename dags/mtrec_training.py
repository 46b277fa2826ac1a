"""mtrec_training: the whole pipeline, one Airflow task per stage.

Each run gets its own DVC workspace (``runs/<run_id>/``: the trigger form's params on top of
``params.yaml``, sharing the project's DVC cache); every task runs ``dvc repro <stage>`` there,
so a stage whose inputs did not change is restored, not recomputed. The stages' code lives in
``src/mtrec``; this file only wires stages, params, queues and retries.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, task

from mtrec.stages import STAGES

PROJECT_DIR = Path(os.environ.get("MTREC_PROJECT_DIR", Path(__file__).resolve().parents[1]))
# Stages that train models go to the `gpu` queue (a GPU Celery worker when there is one).
GPU_STAGES = frozenset({"pretrain", "transfer"})
STRATEGIES = ["scratch", "zero_shot", "frozen", "finetune", "l2sp"]
ARCHITECTURES = ["independent", "shared_bottom", "mmoe", "ple", "esmm"]


@dag(
    dag_id="mtrec_training",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    tags=["mtrec", "training"],
    doc_md=__doc__,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "target_genres": Param(
            ["Animation", "Children"],
            type="array",
            minItems=1,
            items={"type": "string"},
            title="Target-domain genres",
            description="Movies with any of these genres form the target domain.",
        ),
        "strategies": Param(
            ["scratch", "finetune"],
            type="array",
            minItems=1,
            items={"type": "string", "enum": STRATEGIES},
            title="Transfer strategies",
            description="Trained and compared on one split.",
        ),
        "architecture": Param(
            "shared_bottom",
            type="string",
            enum=ARCHITECTURES,
            title="Multi-task architecture",
            description="How the tasks share layers above the user/item encoder.",
        ),
        "epochs": Param(
            40,
            type="integer",
            minimum=1,
            maximum=500,
            title="Max epochs",
            description="Upper bound for pretraining and transfer; both stop early.",
        ),
        "seeds": Param(
            [0, 1, 2],
            type="array",
            minItems=1,
            items={"type": "integer"},
            title="Seeds",
            description="Every figure is mean ± std over these.",
        ),
        "promote": Param(
            True,
            type="boolean",
            title="Promote",
            description="Move @champion when every gate passes.",
        ),
    },
)
def mtrec_training() -> None:
    @task
    def prepare_workspace(**context) -> str:
        """Write this run's params (defaults ⊕ form) into its own DVC workspace."""
        from mtrec.workspace import create_workspace, form_overrides

        return str(
            create_workspace(PROJECT_DIR, context["run_id"], form_overrides(context["params"]))
        )

    @task
    def run_stage(workspace: str, stage: str) -> str:
        """``dvc repro <stage>`` in the run's workspace."""
        from mtrec.workspace import run_stage as repro

        repro(Path(workspace), stage)
        return workspace

    workspace = prepare_workspace()
    for stage in STAGES:
        queue = "gpu" if stage in GPU_STAGES else "default"
        workspace = run_stage.override(task_id=stage, queue=queue)(workspace, stage)


mtrec_training()
