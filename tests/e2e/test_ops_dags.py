"""The operations DAGs (feedback, rollback) and the training DAG's scheduling, under dag.test().

Airflow reads its configuration at import, so each check runs in a subprocess with its own
AIRFLOW_HOME and SQLite metadata database (migrated once per module).
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import mlflow
import pytest
import yaml

from mtrec.config import RegistryConfig
from mtrec.registry import Check, Decision, Registry

from ..conftest import PROJECT_ROOT, migrate_airflow, tool_env

DAGS = str(PROJECT_ROOT / "dags")

# The scripts import no Great Expectations up front (8 s each): parsing never does, and the
# feedback task imports it itself, after Airflow, as it does on a worker.
INSPECT = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={dags!r})
def names(condition):  # AssetAll / AssetAny hold their assets in .objects
    if condition is None:
        return []
    if hasattr(condition, "objects"):
        return [n for c in condition.objects for n in names(c)]
    return [condition.name]
def describe(dag):
    timetable = dag.timetable
    return {{
        "timetable": type(timetable).__name__,
        "cron": getattr(getattr(timetable, "timetable", timetable), "expression", None),
        "assets": names(getattr(timetable, "asset_condition", None)),
        "pools": {{t.task_id: t.pool for t in dag.tasks}},
        "retries": {{t.task_id: t.retries for t in dag.tasks}},
        "timeouts": {{t.task_id: t.execution_timeout.total_seconds() for t in dag.tasks}},
        "outlets": {{t.task_id: [a.name for a in t.outlets] for t in dag.tasks}},
        "params": sorted(dag.params), "catchup": dag.catchup,
    }}
print(json.dumps({{"errors": {{k: str(v) for k, v in bag.import_errors.items()}},
                  "dags": {{d: describe(bag.dags[d]) for d in bag.dags}}}}))
"""

RUN = """
import json
from airflow.dag_processing.dagbag import DagBag
from airflow.models.asset import AssetEvent, AssetModel
from airflow.utils.session import create_session
from sqlalchemy import select
dag = DagBag(dag_folder={dags!r}).dags[{dag_id!r}]
for _ in range({times}):
    run = dag.test(run_conf={conf!r})
    with create_session() as session:
        events = session.execute(
            select(AssetModel.name, AssetEvent.extra).join(AssetEvent.asset)
        ).all()
    print("RESULT " + json.dumps({{"state": str(run.state),
          "tasks": {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}},
          "events": [[name, extra] for name, extra in events]}}), flush=True)
"""


def _python(code: str, env: dict) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
    )


# Under pytest-xdist (make test) the tests stay on one worker (tests/conftest.py: XDIST_GROUPS).
@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """One migrated SQLite metadata DB for the module."""
    home = tmp_path_factory.mktemp("airflow")
    env = tool_env(home) | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }
    migrate_airflow(env)
    return home


@pytest.fixture
def airflow_env(airflow_home, project, tmp_path):
    return tool_env(tmp_path) | {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": DAGS,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "MTREC_PROJECT_DIR": str(project),
    }


def _inspect(env: dict) -> dict:
    result = _python(INSPECT.format(dags=DAGS), env)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    return info["dags"]


def _run(env: dict, dag_id: str, conf: dict, times: int = 1) -> list[dict]:
    """``times`` runs of the DAG under dag.test(), one after the other in one process (one
    Airflow start-up for all of them); each run's outcome."""
    result = _python(RUN.format(dags=DAGS, dag_id=dag_id, conf=conf, times=times), env)
    lines = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    assert result.returncode == 0 and len(lines) == times, (result.stdout + result.stderr)[-5000:]
    return [json.loads(line.removeprefix("RESULT ")) for line in lines]


def test_schedules_pool_retries_and_timeouts(airflow_env, project) -> None:
    dags = _inspect(airflow_env)
    assert {"mtrec_training", "mtrec_feedback", "mtrec_rollback"} <= set(dags)

    training = dags["mtrec_training"]
    assert training["timetable"] == "AssetOrTimeSchedule"
    assert training["cron"] == "0 0 * * 0"  # @weekly, from params.yaml
    assert training["assets"] == ["mtrec_interactions"]
    assert training["pools"]["pretrain"] == "mtrec_gpu"
    assert training["pools"]["transfer"] == "mtrec_gpu"
    assert training["pools"]["validate"] == "default_pool"
    assert set(training["retries"].values()) == {2}
    assert all(0 < t <= 2 * 3600 for t in training["timeouts"].values())

    feedback = dags["mtrec_feedback"]
    assert feedback["cron"] == "*/30 * * * *" and feedback["catchup"] is False
    assert feedback["outlets"] == {
        "ingest": [],
        "publish": ["mtrec_interactions"],
        "check_rejections": [],
    }
    assert dags["mtrec_rollback"]["params"] == ["action", "model_name", "reason", "version"]
    assert dags["mtrec_cleanup"]["cron"] == "0 0 * * *"  # @daily, from params.yaml

    pools = json.loads((PROJECT_ROOT / "dags" / "pools.json").read_text())
    assert pools["mtrec_gpu"]["slots"] >= 1

    # No cron in params: retraining only on new data (or by hand).
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["schedule"]["training"] = None
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    training = _inspect(airflow_env)["mtrec_training"]
    assert training["timetable"] == "AssetTriggeredTimetable"
    assert training["assets"] == ["mtrec_interactions"]


def test_feedback_dag_appends_good_files_emits_the_asset_and_fails_on_bad_ones(
    airflow_env, project
) -> None:
    incoming = project / "data" / "feedback" / "incoming"
    incoming.mkdir(parents=True)
    now = int(time.time()) - 60
    header = "userId,movieId,rating,timestamp\n"
    (incoming / "good.csv").write_text(header + f"1,2,4.5,{now}\n1,5,3.0,{now}\n")
    (incoming / "bad.csv").write_text(header + f"6,1,11.0,{now}\n")

    # Two runs: the files above, then nothing new (nothing happens in between).
    outcome, again = _run(airflow_env, "mtrec_feedback", {}, times=2)

    assert outcome["tasks"] == {
        "ingest": "success",
        "publish": "success",
        "check_rejections": "failed",
    }
    assert outcome["state"] == "failed"  # a rejected file makes someone look
    assert outcome["events"] == [["mtrec_interactions", {"files": ["good.csv"], "rows": 2}]]
    assert (project / "data" / "feedback" / "rejected" / "bad.csv.reason.txt").exists()

    # Nothing new: the run succeeds without emitting the asset again.
    assert again["state"] == "success"
    assert again["tasks"]["publish"] == "skipped"
    assert len(again["events"]) == 1


def test_cleanup_dag_keeps_the_newest_run_workspaces(airflow_env, project) -> None:
    for i in range(4):
        workspace = project / "runs" / f"manual__{i}"
        workspace.mkdir(parents=True)
        (workspace / "run.json").write_text("{}")
        os.utime(workspace / "run.json", (1000 + i, 1000 + i))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["runs"]["keep"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    (outcome,) = _run(airflow_env, "mtrec_cleanup", {})

    assert outcome["state"] == "success", outcome
    assert sorted(p.name for p in (project / "runs").iterdir()) == ["manual__2", "manual__3"]


def test_rollback_dag_moves_the_champion_and_records_the_user(airflow_env) -> None:
    cfg = RegistryConfig(tracking_uri=airflow_env["MLFLOW_TRACKING_URI"])
    registry = Registry(cfg)
    registry.client.create_registered_model(cfg.model_name)
    promote = Decision([Check("data", True, "ok")], promote_requested=True)
    for _ in range(2):
        with mlflow.start_run() as run:
            mlflow.log_text("weights", "model/weights.txt")
        version = registry.client.create_model_version(
            cfg.model_name, f"{run.info.artifact_uri}/model", run.info.run_id
        )
        registry.set_aliases(str(version.version), promote, registry.champion_version())
    assert registry.champion_version() == "2"

    (outcome,) = _run(airflow_env, "mtrec_rollback", {"reason": "CTR fell 8% after v2"})

    assert outcome["state"] == "success", outcome
    # No run workspace has recommendations to refresh in this project.
    assert outcome["tasks"] == {"rollback": "success", "recommend": "skipped"}, outcome
    assert registry.champion_version() == "1"
    tags = registry.client.get_model_version(cfg.model_name, "1").tags
    assert tags["mtrec.rollback.by"] == "dag_test"  # dag.test()'s triggering user
    assert tags["mtrec.rollback.reason"] == "CTR fell 8% after v2"
