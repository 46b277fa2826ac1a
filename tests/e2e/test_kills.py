"""Kills and failures of a run workspace's stages, as Airflow's tasks meet them: an expected
error is told from a crash, a killed task stops its `dvc repro` and everything under it, and
the next try recovers by itself, restoring the stages that had finished."""

import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from mtrec.errors import StageRejected
from mtrec.workspace import create_workspace, form_overrides, run_stage

from ..conftest import tool_env

# A task's process: run_stage under a SIGTERM handler that, like Airflow 3's task runner's,
# only calls the operator's on_kill (a no-op for @task) and returns; reports how it ended.
# Under Airflow's own execution-timeout guard (SIGALRM -> AirflowTaskTimeout), as the task
# runner wraps a task with an execution_timeout.
RUNNER = """
import signal, sys
from pathlib import Path
from airflow.sdk.execution_time.timeout import timeout
from mtrec.workspace import run_stage
signal.signal(signal.SIGTERM, lambda signum, frame: None)
try:
    with timeout(3600):
        run_stage(Path(sys.argv[1]), sys.argv[2])
except BaseException as exc:
    print("ENDED", type(exc).__name__, flush=True)
    raise
"""


def _stage_process(runner: psutil.Process, stage: str) -> psutil.Process:
    """The ``python -m mtrec <stage>`` under ``runner`` once it is running."""
    for _ in range(3000):
        for child in runner.children(recursive=True):
            try:
                if child.cmdline()[-3:] == ["-m", "mtrec", stage]:
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.1)
    raise AssertionError(f"stage {stage} never started")


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _start(workspace, stage: str, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(RUNNER), str(workspace), stage],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_kills_leave_nothing_running_and_the_next_try_recovers(project, monkeypatch) -> None:
    env = tool_env(project.parent)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    workspace = create_workspace(project, "scheduled__kill", {})
    run_stage(workspace, "validate")
    canonical = workspace / "data" / "interim" / "interactions.parquet"
    finished = canonical.stat().st_mtime_ns

    # Airflow kills the task (UI, timeout, worker shutdown): SIGTERM to the task's process.
    runner = _start(workspace, "preprocess", env)
    stage = _stage_process(psutil.Process(runner.pid), "preprocess")
    group = [stage, *psutil.Process(runner.pid).children(recursive=True)]
    runner.terminate()
    out, _ = runner.communicate(timeout=120)
    assert "ENDED StageFailed" in out, out
    assert all(_gone(p) for p in group), [p for p in group if not _gone(p)]

    # The task's execution_timeout expires: Airflow's alarm fires in the task process.
    runner = _start(workspace, "preprocess", env)
    stage = _stage_process(psutil.Process(runner.pid), "preprocess")
    group = [stage, *psutil.Process(runner.pid).children(recursive=True)]
    runner.send_signal(signal.SIGALRM)  # the alarm timeout(...) set, now rather than later
    out, _ = runner.communicate(timeout=120)
    assert "ENDED AirflowTaskTimeout" in out, out
    assert all(_gone(p) for p in group), [p for p in group if not _gone(p)]

    # The stage process killed outright (OOM killer, kill -9): a crash, not a data error.
    runner = _start(workspace, "preprocess", env)
    _stage_process(psutil.Process(runner.pid), "preprocess").kill()
    out, _ = runner.communicate(timeout=120)
    assert "ENDED StageFailed" in out, out

    # The retry: preprocess runs again, the stages that had finished are not recomputed.
    run_stage(workspace, "preprocess")
    assert canonical.stat().st_mtime_ns == finished
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "preprocess"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "up to date" in status.stdout, status.stdout

    # Another run with a misspelt genre: ingest and validate come from the run-cache, and
    # preprocess's data error is an expected failure (Airflow: failed at once, no retry).
    typo = create_workspace(
        project, "manual__typo", form_overrides({"target_genres": ["Animaton"]})
    )
    with pytest.raises(StageRejected, match=r"stage preprocess: DataValidationError: .*Animaton"):
        run_stage(typo, "preprocess")
    assert (typo / "data" / "interim" / "interactions.parquet").exists()
