"""Shared fixtures: the bundled data, a throwaway copy of the project for end-to-end runs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import great_expectations  # noqa: F401  (imported before anything pulls in airflow)
import pytest
import requests
import yaml

from mtrec.config import DataConfig, deep_merge
from mtrec.data.canonical import CanonicalTables
from mtrec.data.movielens import load_movielens

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUNDLED = PROJECT_ROOT / "data" / "ml-latest-small"
# Small enough for CI, large enough that every stage does real work on the real data.
TINY = {
    "eval": {"seeds": [0]},
    "pretrain": {"epochs": 2},
    "transfer": {"strategies": ["scratch", "finetune"], "train": {"epochs": 2}},
    "curve": {"fractions": [0.2]},
    "baselines": {"bpr": {"epochs": 2}, "lightgcn": {"epochs": 2}},
}


# `make test` runs two pytest-xdist workers (--dist loadgroup). The tests of each file named
# here stay on one worker, in order: those sharing a costly module set-up, and the two Airflow
# stacks, never side by side. The file map stands in for xdist_group marks, which pytest 9.2's
# structured node ids defeat (pytest-xdist issue 1386: the marked tests are spread as unmarked).
XDIST_GROUPS = {
    "tests/e2e/test_airflow_ui.py": "airflow-stack",
    "tests/e2e/test_live_stack.py": "airflow-stack",
    "tests/e2e/test_make_airflow.py": "airflow-stack",
    "tests/e2e/test_bad_input.py": "bad-input",  # one good run, twelve cases
    "tests/e2e/test_ops_dags.py": "ops-dags",  # one migrated metadata DB
}


# Under xdist, the costliest files first (then the rest in collection order), so that no long
# test starts last while the other worker has nothing left to run.
XDIST_FIRST = (
    "tests/e2e/test_live_stack.py",
    "tests/e2e/test_airflow_ui.py",
    "tests/e2e/test_dvc_pipeline.py",
    "tests/e2e/test_dag.py",
    "tests/e2e/test_bad_input.py",
    "tests/e2e/test_ops_dags.py",
    "tests/e2e/test_dvc_remote.py",
    "tests/core/test_distributed.py",
    "tests/stages/test_architectures_on_data.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist: :data:`XDIST_FIRST` first (a run without workers keeps its order)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts alike: same collection
        rank = {path: i for i, path in enumerate(XDIST_FIRST)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """--dist loadgroup (and load, which a bare ``-n N`` means), grouping by
    :data:`XDIST_GROUPS` too, in collection order."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadGroupScheduling

    config.option.loadscopereorder = False  # not largest group first: XDIST_FIRST's order

    class FileGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            group = XDIST_GROUPS.get(nodeid.split("::", 1)[0])
            return group or super()._split_scope(nodeid)

    return FileGroupScheduling(config, log)


@pytest.fixture(scope="session")
def canonical() -> CanonicalTables:
    """The bundled MovieLens data as canonical tables (read once per session)."""
    return load_movielens(DataConfig(raw_dir=str(BUNDLED)))


def tool_env(tmp: Path) -> dict[str, str]:
    """Environment for subprocesses: this venv first on PATH, a private MLflow store."""
    return os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "GX_ANALYTICS_ENABLED": "False",
    }


def make_project(parent: Path) -> Path:
    """A copy of the project (code, suites, dvc.yaml, bundled data) with tiny params,
    DVC-initialised; its MLflow store is ``parent/mlflow.db`` (see :func:`tool_env`)."""
    root = parent / "project"
    root.mkdir()
    shutil.copy2(PROJECT_ROOT / "dvc.yaml", root)
    shutil.copytree(
        PROJECT_ROOT / "src" / "mtrec",
        root / "src" / "mtrec",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copytree(BUNDLED, root / "data" / "ml-latest-small")
    shutil.copytree(PROJECT_ROOT / "gx", root / "gx", ignore=shutil.ignore_patterns("uncommitted"))
    shutil.copytree(PROJECT_ROOT / "configs", root / "configs")
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, TINY), sort_keys=False))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    # The project's remotes, plus the core.no_scm that `dvc init --no-scm` sets (written here:
    # one dvc process fewer per project copy).
    config = (PROJECT_ROOT / ".dvc" / "config").read_text()
    assert "[core]\n" in config, config
    (root / ".dvc" / "config").write_text(
        config.replace("[core]\n", "[core]\n    no_scm = true\n", 1)
    )
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh project copy for one test."""
    return make_project(tmp_path)


@pytest.fixture(scope="module")
def module_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy shared by the tests of one module (for expensive set-ups)."""
    return make_project(tmp_path_factory.mktemp("module"))


def run_dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the dvc CLI in ``root`` as a user would; output captured, exit code not checked."""
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        text=True,
        capture_output=True,
        env=tool_env(root.parent),
    )


def run_stages(root: Path, *stages: str) -> None:
    """Stages through their CLI (``python -m mtrec <stage>``'s ``main``) in this process, in
    ``root`` with its MLflow store: one torch/GX/MLflow import instead of one per stage. Record
    the outputs with `dvc commit`, as `dvc repro` would (test_dvc_pipeline runs `dvc repro`)."""
    from mtrec.__main__ import main

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the stages read ./params.yaml, as under dvc repro
        patch.setenv("MLFLOW_TRACKING_URI", tool_env(root.parent)["MLFLOW_TRACKING_URI"])
        for stage in stages:
            assert main([stage]) == 0, f"stage {stage} failed"


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI; without this, one test's
    registry would become the next test's default (set, then deleted: restored to unset)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")


def migrate_airflow(env: dict[str, str]) -> None:
    """``airflow db migrate`` for the metadata DB that ``env`` names (a test's own SQLite)."""
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], object], timeout: float, every: float = 1.0):
    """Poll ``check()`` until it returns something truthy (a refused connection counts as
    not yet); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except (requests.ConnectionError, OSError):
            pass
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
