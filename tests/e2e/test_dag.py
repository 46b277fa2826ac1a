"""The Airflow DAG: parses cleanly, wires the stages, and runs end to end under dag.test().

Airflow reads its configuration at import, so each check runs in a subprocess with its own
AIRFLOW_HOME and SQLite metadata database.
"""

import json
import subprocess
import sys
import textwrap

import mlflow
import pytest
import yaml

from mtrec.config import form_defaults, load_params

from ..conftest import PROJECT_ROOT, TINY, migrate_airflow, tool_env

# The scripts import no Great Expectations (8 s each): parsing never does, and the validate
# task runs `dvc repro validate` in a process of its own, as under any executor.
INSPECT = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={dags!r})
dag = bag.dags["mtrec_training"]
print(json.dumps({{
    "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
    "tasks": [t.task_id for t in dag.topological_sort()],
    "queues": {{t.task_id: t.queue for t in dag.tasks}},
    "params": {{k: dag.params[k] for k in dag.params}},
    "schemas": {{k: dag.params.get_param(k).schema for k in dag.params}},
    "field_docs": {{k: dag.params.get_param(k).description for k in dag.params}},
    "description": dag.description,
    "docs": {{t.task_id: t.doc_md for t in dag.tasks}},
    "catchup": dag.catchup, "tags": sorted(dag.tags),
}}))
"""

RUN = """
import json
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder={dags!r}).dags["mtrec_training"]
run = dag.test(run_conf={conf!r})
tis = run.get_task_instances()
mapped = {{}}
for ti in tis:
    if ti.map_index >= 0:
        mapped[ti.task_id] = mapped.get(ti.task_id, 0) + 1
print("RESULT " + json.dumps({{"state": str(run.state), "mapped": mapped,
      "tasks": {{f"{{ti.task_id}}[{{ti.map_index}}]": str(ti.state) for ti in tis}},
      "task_ids": sorted({{ti.task_id for ti in tis}}), "dag_tasks": sorted(dag.task_ids)}}))
"""


@pytest.fixture
def airflow_env(tmp_path, project):
    home = tmp_path / "airflow"
    home.mkdir()
    env = tool_env(tmp_path) | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "MTREC_PROJECT_DIR": str(project),
    }
    return env


def _python(code: str, env: dict) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        text=True,
        capture_output=True,
        timeout=900,
    )


def test_dag_parses_and_wires_every_stage(airflow_env) -> None:
    result = _python(INSPECT.format(dags=str(PROJECT_ROOT / "dags")), airflow_env)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    assert info["tasks"] == [
        "prepare_workspace",
        "ingest",
        "validate",
        "preprocess",
        "embed_items",
        "pretrain",
        "transfer_items",
        "transfer",
        "baselines",
        "evaluate",
        "curve_items",
        "curve",
        "report",
        "register",
        "recommend",
    ]
    assert info["queues"]["pretrain"] == info["queues"]["transfer"] == info["queues"]["curve"]
    assert info["queues"]["curve"] == info["queues"]["embed_items"] == "gpu"
    assert info["queues"]["baselines"] == "gpu"
    assert info["queues"]["validate"] == "default"
    assert set(info["params"]) == {
        "preset",
        "target_genres",
        "strategies",
        "architecture",
        "pretrain_epochs",
        "transfer_epochs",
        "seeds",
        "promote",
    }
    assert info["catchup"] is False and "mtrec" in info["tags"]


def test_the_trigger_form_is_params_yaml_with_choices(airflow_env, project) -> None:
    """An untouched form (and a scheduled run) runs params.yaml as it is; choices are offered
    as lists; every field, task and the DAG say what they are."""
    result = _python(INSPECT.format(dags=str(PROJECT_ROOT / "dags")), airflow_env)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    defaults = form_defaults(load_params(project / "params.yaml"))
    assert info["params"] == defaults | {"preset": None}
    schemas = info["schemas"]
    assert all(schema.get("title") for schema in schemas.values())
    assert all(len(doc) > 40 for doc in info["field_docs"].values())
    assert "amazon-sport-phone" in schemas["preset"]["enum"]
    assert schemas["preset"]["values_display"]["null"].startswith("none")  # not a bare null
    assert schemas["strategies"]["examples"] == schemas["strategies"]["items"]["enum"]
    assert {"Animation", "Horror"} <= set(schemas["target_genres"]["examples"])
    assert "type" not in schemas["seeds"]["items"]  # a text box per line, not a JSON editor
    assert "@weekly" in info["description"] and "mtrec_interactions" in info["description"]
    assert all(info["docs"][task] for task in info["tasks"])


def test_dag_runs_end_to_end_and_registers_a_challenger(airflow_env, project) -> None:
    # The live test (test_live_stack) runs this DAG on the production topology; here the same
    # DAG under dag.test(), kept cheap: one epoch, and the curve's one point is the default
    # fraction (evaluate's own, so the mapped curve task has nothing to train).
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["curve"]["fractions"] = [params["target"]["train_fraction"]]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    migrate_airflow(airflow_env)
    conf = {
        "pretrain_epochs": 1,
        "transfer_epochs": 1,
        "seeds": TINY["eval"]["seeds"],
        "strategies": ["scratch", "finetune"],
        "promote": False,
    }
    result = _python(RUN.format(dags=str(PROJECT_ROOT / "dags"), conf=conf), airflow_env)
    lines = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    assert result.returncode == 0 and lines, (result.stdout + result.stderr)[-5000:]
    outcome = json.loads(lines[-1].removeprefix("RESULT "))
    assert outcome["state"] == "success", outcome
    # The run ends with recommend, skipped here: promote false left the registry no @champion.
    assert outcome["tasks"].pop("recommend[-1]") == "skipped", outcome
    assert set(outcome["tasks"].values()) == {"success"}
    # Mapped tasks: one transfer per strategy, one curve point per extra fraction.
    assert outcome["mapped"] == {"transfer": 2, "curve": 1}
    assert outcome["task_ids"] == outcome["dag_tasks"]

    workspaces = list((project / "runs").iterdir())
    assert len(workspaces) == 1
    assert (workspaces[0] / "dvc.lock").exists()
    client = mlflow.MlflowClient(tracking_uri=airflow_env["MLFLOW_TRACKING_URI"])
    challenger = client.get_model_version_by_alias("mtrec", "challenger")
    assert str(challenger.version) == "1"
    assert "champion" not in challenger.aliases  # the form said promote: false


FAIL_FAST = """
import json
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder={dags!r}).dags["mtrec_training"]
run = dag.test(run_conf={conf!r})
ti = run.get_task_instance("prepare_workspace")
print("RESULT " + json.dumps({{"state": str(run.state), "ti": str(ti.state),
      "try": ti.try_number}}))
"""


def test_an_expected_error_fails_the_task_at_once_without_retries(airflow_env, project) -> None:
    # registry.strategy (finetune) is not among the strategies: a ConfigError, which no retry
    # can fix; the task has retries for transient faults, and must not spend them here.
    migrate_airflow(airflow_env)
    conf = {"strategies": ["scratch"]}
    result = _python(FAIL_FAST.format(dags=str(PROJECT_ROOT / "dags"), conf=conf), airflow_env)
    lines = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, (result.stdout + result.stderr)[-5000:]
    outcome = json.loads(lines[-1].removeprefix("RESULT "))
    assert outcome == {"state": "failed", "ti": "failed", "try": 1}, outcome
    assert "registry.strategy" in result.stdout + result.stderr
    assert not (project / "runs").exists()
