"""mtrec_training: the whole pipeline, one Airflow task per stage.

Each run gets its own DVC workspace (``runs/<run_id>/``: the trigger form's params on top of
``params.yaml``, sharing the project's DVC cache); every task runs ``dvc repro <stage>`` there,
so a stage whose inputs did not change is restored, not recomputed. The stages' code lives in
``src/mtrec``; this file only wires stages, params, queues and retries.

It runs on ``schedule.training`` (params.yaml, weekly by default) and whenever
``mtrec_feedback`` accepts new interactions (the asset ``feedback.asset``). Training stages
take a slot of the ``mtrec_gpu`` pool (``dags/pools.json``: one slot per GPU).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import get_args

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from mtrec.config import (
    PARAMS_FILE,
    ModelConfig,
    Strategy,
    form_defaults,
    load_params,
    preset_names,
)
from mtrec.stages import ITEM_STAGES, STAGES

PROJECT_DIR = Path(os.environ.get("MTREC_PROJECT_DIR", Path(__file__).resolve().parents[1]))
# Stages that run neural networks (training, the sentence encoder) go to the `gpu` queue (a
# GPU Celery worker when there is one).
GPU_STAGES = frozenset({"embed_items", "pretrain", "transfer", "baselines", "curve"})
GPU_POOL = "mtrec_gpu"
SETTINGS = load_params(PROJECT_DIR / PARAMS_FILE)  # a file read at parse time, no DB access
DEFAULTS = form_defaults(SETTINGS)
# Retrain on the params' schedule and whenever mtrec_feedback accepts new interactions.
NEW_INTERACTIONS = Asset(SETTINGS.feedback.asset)
SCHEDULE = (
    AssetOrTimeSchedule(
        # run_immediately=0 (and no start_date): deployed or unpaused between two ticks, the
        # DAG waits for the next one instead of catching up the one just missed.
        timetable=CronTriggerTimetable(
            SETTINGS.schedule.training, timezone="UTC", run_immediately=timedelta(0)
        ),
        assets=[NEW_INTERACTIONS],
    )
    if SETTINGS.schedule.training
    else [NEW_INTERACTIONS]
)
STRATEGIES = list(get_args(Strategy))


@contextmanager
def _fail_fast() -> Iterator[None]:
    """An expected failure (MtrecError) fails the task at once: a retry would fail alike."""
    from airflow.sdk.exceptions import AirflowFailException

    from mtrec.errors import MtrecError

    try:
        yield
    except MtrecError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


ARCHITECTURES = list(get_args(ModelConfig.model_fields["architecture"].annotation))


@dag(
    dag_id="mtrec_training",
    schedule=SCHEDULE,
    # No start_date: with one, catchup=False still runs the latest missed tick on unpause.
    catchup=False,
    max_active_runs=2,
    tags=["mtrec", "training"],
    doc_md=__doc__,
    default_args={
        # A lost worker or a flaky store: retry after 1, 2, 4 ... minutes (at most 15); the
        # retry restores the stages that finished from the DVC cache. An expected failure
        # (MtrecError: bad data, config, missing input) fails at once, unretried (_fail_fast).
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
        "execution_timeout": timedelta(hours=2),
    },
    params={
        # Form defaults are params.yaml's, so an untouched form runs what `dvc repro` runs.
        "preset": Param(
            None,
            type=["null", "string"],
            enum=[None, *preset_names(PROJECT_DIR)],
            title="Dataset preset",
            description="configs/<preset>.yaml applied on top of params.yaml (empty: none); "
            "the fields below apply on top of it.",
        ),
        "target_genres": Param(
            DEFAULTS["target_genres"],
            type="array",
            minItems=1,
            items={"type": "string"},
            title="Target-domain genres",
            description="Movies with any of these genres form the target domain.",
        ),
        "strategies": Param(
            DEFAULTS["strategies"],
            type="array",
            minItems=1,
            items={"type": "string", "enum": STRATEGIES},
            title="Transfer strategies",
            description="Trained and compared on one split.",
        ),
        "architecture": Param(
            DEFAULTS["architecture"],
            type="string",
            enum=ARCHITECTURES,
            title="Multi-task architecture",
            description="How the tasks share layers above the user/item encoder.",
        ),
        "epochs": Param(
            DEFAULTS["epochs"],
            type="integer",
            minimum=1,
            maximum=500,
            title="Max epochs",
            description="Upper bound for pretraining and transfer; both stop early.",
        ),
        "seeds": Param(
            DEFAULTS["seeds"],
            type="array",
            minItems=1,
            items={"type": "integer"},
            title="Seeds",
            description="Every figure is mean ± std over these.",
        ),
        "promote": Param(
            DEFAULTS["promote"],
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

        with _fail_fast():
            return str(
                create_workspace(
                    PROJECT_DIR, context["run_id"], form_overrides(context["params"], PROJECT_DIR)
                )
            )

    @task
    def run_stage(workspace: str, stage: str) -> str:
        """``dvc repro <stage>`` in the run's workspace; a kill or timeout stops it."""
        from mtrec.workspace import run_stage as repro

        with _fail_fast():
            repro(Path(workspace), stage)
        return workspace

    @task
    def stage_items(workspace: str, stage: str) -> list[str]:
        """The run's ``foreach`` stages, e.g. ``transfer@finetune`` per strategy."""
        from mtrec.workspace import foreach_stages

        return foreach_stages(Path(workspace), stage)

    workspace = prepare_workspace()
    upstream = workspace
    for stage in STAGES:
        queue = "gpu" if stage in GPU_STAGES else "default"
        pool = GPU_POOL if stage in GPU_STAGES else "default_pool"
        if stage in ITEM_STAGES:
            # One mapped task per strategy / fraction. They share the run's DVC workspace,
            # whose repo lock admits one `dvc repro` at a time: run them one after another.
            items = stage_items.override(task_id=f"{stage}_items")(workspace, stage)
            upstream >> items
            current = (
                run_stage.override(
                    task_id=stage, queue=queue, pool=pool, max_active_tis_per_dagrun=1
                )
                .partial(workspace=workspace)
                .expand(stage=items)
            )
        else:
            current = run_stage.override(task_id=stage, queue=queue, pool=pool)(workspace, stage)
        upstream >> current
        upstream = current


mtrec_training()
