"""Shared fixtures: the bundled data, a throwaway copy of the project for end-to-end runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import great_expectations  # noqa: F401  (imported before anything pulls in airflow)
import pytest
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
    "baselines": {"bpr": {"epochs": 2}},
}


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
    shutil.copy2(PROJECT_ROOT / ".dvc" / "config", root / ".dvc" / "config")  # remotes
    subprocess.run(
        [sys.executable, "-m", "dvc", "config", "core.no_scm", "true"], cwd=root, check=True
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
