"""`make airflow` stops Airflow standalone and everything it started however it is stopped:
a SIGTERM to make (`kill`, a supervisor) or a hang-up of its terminal, as Ctrl-C does
(test_airflow_ui.py). Standalone runs in a session of its own, so only the script's trap can
stop it."""

from __future__ import annotations

import contextlib
import os
import signal

import psutil
import pytest

from ..conftest import make_project
from .make_airflow import free_port, start_make_airflow


def _airflow_processes(home: str) -> list[psutil.Process]:
    """Live processes of the Airflow whose AIRFLOW_HOME is ``home``."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("AIRFLOW_HOME") == home and proc.status() != "zombie":
                found.append(proc)
    return found


@pytest.mark.parametrize(
    ("sig", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGHUP, True)],
    ids=["SIGTERM to make", "hang-up of the terminal"],
)
def test_make_airflow_stops_everything_on_a_signal(tmp_path, sig, to_group) -> None:
    project = make_project(tmp_path)
    home = str(tmp_path / "airflow")
    env = os.environ | {
        "MTREC_PROJECT_DIR": str(project),
        "AIRFLOW_HOME": home,
        "AIRFLOW_PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    make, banner = start_make_airflow(env)
    try:
        assert "Airflow UI" in banner, banner
        running = _airflow_processes(home)
        assert len(running) > 3  # standalone and its services

        if to_group:
            os.killpg(make.pid, sig)  # what the terminal sends its foreground group
        else:
            os.kill(make.pid, sig)  # `kill <pid>`: make alone
        make.wait(timeout=120)
        _, alive = psutil.wait_procs(running, timeout=60)
        assert not alive, f"still running: {[p.cmdline()[:3] for p in alive]}"
        assert not _airflow_processes(home)
    finally:
        for proc in _airflow_processes(home):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if make.poll() is None:
            make.kill()
