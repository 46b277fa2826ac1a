"""mtrec_training: the whole pipeline, one Airflow task per stage.

Each run gets its own DVC workspace (``runs/<run_id>/``: the trigger form's params on top of
``params.yaml``, sharing the project's DVC cache); every task runs ``dvc repro <stage>`` there,
so a stage whose inputs did not change is restored, not recomputed. The stages' code lives in
``src/mtrec``; this file only wires stages, params, queues and retries.

It runs on ``schedule.training`` (params.yaml, weekly by default) and whenever
``mtrec_feedback`` accepts new interactions (the asset ``feedback.asset``). Training stages
take a slot of the ``mtrec_gpu`` pool (``dags/pools.json``: one slot per GPU).

The run's result (each gate's verdict, the registered version and its aliases, NDCG / HR /
Recall per strategy) is in the ``register`` task's log and XCom.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from mtrec.config import (
    PARAMS_FILE,
    ModelConfig,
    Strategy,
    form_defaults,
    load_params,
    presets,
    read_preset,
)
from mtrec.data.taxonomy import genre_taxonomy
from mtrec.stages import ITEM_STAGES, STAGE_INFO, STAGES

log = logging.getLogger(__name__)
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
PRESETS = presets(PROJECT_DIR / PARAMS_FILE)
# The genres offered: the taxonomies of params.yaml's dataset and of each preset's, and the
# genres each names (a dataset whose categories only its data knows adds its own target's).
_CONFIGS = [
    SETTINGS,
    *(load_params(PROJECT_DIR / PARAMS_FILE, read_preset(PROJECT_DIR, name)) for name in PRESETS),
]
GENRES = sorted({g for p in _CONFIGS for g in (*genre_taxonomy(p.data), *p.target.genres)})
MAX_EPOCHS = 500
SCHEDULE_TEXT = (
    f"on `{SETTINGS.schedule.training}` (UTC, schedule.training) and "
    if SETTINGS.schedule.training
    else ""
) + f"whenever mtrec_feedback accepts new interactions (asset `{SETTINGS.feedback.asset}`)"


def _stage_doc(stage: str) -> str:
    """A task's documentation in the UI: the stage's own description."""
    info = STAGE_INFO[stage]
    return (
        f"`dvc repro {stage}` in the run's workspace: {info.summary}.\n\n"
        f"- reads: {info.reads}\n- writes: {info.writes}\n"
        f"- params: {', '.join(info.params)}"
    )


@dag(
    dag_id="mtrec_training",
    schedule=SCHEDULE,
    # No start_date: with one, catchup=False still runs the latest missed tick on unpause.
    catchup=False,
    max_active_runs=2,
    tags=["mtrec", "training"],
    description=f"Train, evaluate and register mtrec: runs {SCHEDULE_TEXT}, or when triggered.",
    doc_md=__doc__ + f"\n\nSchedule: {SCHEDULE_TEXT}.",
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
        # Form defaults are params.yaml's, each field one key of it: an untouched form, a
        # scheduled run and an asset-triggered run all run what `dvc repro` runs.
        # null, not "": the form treats an empty string in a field without null as missing.
        "preset": Param(
            None,
            type=["null", "string"],
            enum=[None, *PRESETS],
            values_display={
                None: "none: params.yaml as it is",
                **{name: f"{name}: {about}" for name, about in PRESETS.items()},
            },
            title="Dataset preset",
            description="Another dataset: configs/<preset>.yaml on top of params.yaml. Fields "
            "you change below apply on top of the preset; untouched ones keep the preset's.",
        ),
        "target_genres": Param(
            DEFAULTS["target_genres"],
            type="array",
            minItems=1,
            items={"type": "string"},
            examples=GENRES,
            title="Target-domain genres",
            description="Items of any of these genres form the sparse target domain the model "
            "transfers into; every other item is the source domain (target.genres).",
        ),
        "strategies": Param(
            DEFAULTS["strategies"],
            type="array",
            minItems=1,
            items={"type": "string", "enum": STRATEGIES},
            examples=STRATEGIES,
            title="Transfer strategies",
            description="Trained and compared on one split (transfer.strategies). scratch: "
            "target only; zero_shot: the source model as is; frozen / finetune / l2sp: start "
            "from the source model; joint / sample_weighted: add source rows. Keep scratch "
            "and the registered strategy (registry.strategy) in the list.",
        ),
        "architecture": Param(
            DEFAULTS["architecture"],
            type="string",
            enum=ARCHITECTURES,
            title="Multi-task architecture",
            description="How the click, like, rating and genre tasks share layers "
            "(model.architecture): shared_bottom, independent, mmoe, ple or esmm.",
        ),
        "pretrain_epochs": Param(
            DEFAULTS["pretrain_epochs"],
            type="integer",
            minimum=1,
            maximum=MAX_EPOCHS,
            title="Pretraining max epochs",
            description="Upper bound for pretraining on the source domain (pretrain.epochs); "
            "it stops early when validation stops improving.",
        ),
        "transfer_epochs": Param(
            DEFAULTS["transfer_epochs"],
            type="integer",
            minimum=1,
            maximum=MAX_EPOCHS,
            title="Transfer max epochs",
            description="Upper bound for each strategy on the target domain "
            "(transfer.train.epochs); it stops early too.",
        ),
        "seeds": Param(
            DEFAULTS["seeds"],
            type="array",
            minItems=1,
            # Integers or their text (the form's box sends one line per seed as text).
            items={"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9]+$"}]},
            title="Seeds",
            description="One per line. Every model is trained once per seed and every figure "
            "is mean ± std over them (eval.seeds); more seeds, longer runs.",
        ),
        "promote": Param(
            DEFAULTS["promote"],
            type="boolean",
            title="Promote",
            description="Move @champion to the new model when every gate passes "
            "(registry.promote); off: it only becomes @challenger.",
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
    def register(workspace: str) -> dict[str, Any]:
        """``dvc repro register``, then the run's result (gates, version, aliases, metrics):
        logged, and returned as the task's XCom, both shown in the Airflow UI."""
        from mtrec.summary import run_summary, summary_lines
        from mtrec.workspace import run_stage as repro

        repro(Path(workspace), "register")
        summary = run_summary(workspace)
        for line in summary_lines(summary):
            log.info("%s", line)
        return summary

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
                    task_id=stage,
                    queue=queue,
                    pool=pool,
                    max_active_tis_per_dagrun=1,
                    doc_md=_stage_doc(stage),
                )
                .partial(workspace=workspace)
                .expand(stage=items)
            )
        elif stage == "register":
            current = register.override(doc_md=_stage_doc(stage))(workspace)
        else:
            current = run_stage.override(
                task_id=stage, queue=queue, pool=pool, doc_md=_stage_doc(stage)
            )(workspace, stage)
        upstream >> current
        upstream = current

    @task(task_id="recommend")
    def serve(workspace: str) -> str:
        """``dvc repro recommend``: batch recommendations from the alias served (the new
        ``@champion`` when this run promoted), so serving follows every promotion; skipped
        while the registry has no such alias yet."""
        from airflow.sdk.exceptions import AirflowSkipException

        from mtrec.config import PARAMS_FILE, registry_config
        from mtrec.errors import RegistryError
        from mtrec.registry import Registry
        from mtrec.workspace import run_stage as repro

        params = load_params(Path(workspace) / PARAMS_FILE)
        try:
            Registry(registry_config(params)).alias_version(params.serving.alias)
        except RegistryError as exc:
            raise AirflowSkipException(f"nothing to serve: {exc}") from exc
        repro(Path(workspace), "recommend")
        return workspace

    upstream >> serve(workspace)


mtrec_training()
