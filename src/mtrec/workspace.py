"""Per-run DVC workspaces: how Airflow runs the same stages ``dvc repro`` runs on a laptop.

Each DAG run gets ``runs/<run_id>/`` holding its own ``params.yaml`` (defaults ⊕ trigger
form), ``dvc.yaml``, the code and raw data it depends on, and a DVC config pointing at the
project's shared cache. A task runs ``dvc repro <stage>`` there: unchanged stages are restored
from the run-cache instead of recomputed, concurrent runs never share a workspace lock, and the
run's ``dvc.lock`` records every data and model hash for the registry.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtrec.config import (
    PARAMS_FILE,
    Params,
    deep_merge,
    form_defaults,
    form_to_params,
    load_params,
    read_preset,
    write_params,
)
from mtrec.errors import StageFailed
from mtrec.io import read_json, write_json
from mtrec.registry import git_revision

log = logging.getLogger(__name__)

RUNS_DIR = "runs"
RUN_INFO = "run.json"
_TAIL_LINES = 40


def form_overrides(form: Mapping[str, Any], project: Path | None = None) -> dict[str, Any]:
    """Map the Airflow trigger form's fields onto nested params overrides: the chosen dataset
    preset (``configs/<preset>.yaml`` of ``project``) first, the other fields on top."""
    if form.get("preset"):
        if project is None:
            raise ValueError("a preset needs the project directory it lives in")
        # The form's fields default to params.yaml's values: only the ones the operator changed
        # go on top of the preset (an untouched genre list must not override the preset's).
        defaults = form_overrides(form_defaults(load_params(project / PARAMS_FILE)))
        changed = form_overrides(dict(form, preset=None))
        return deep_merge(read_preset(project, form["preset"]), _changed(changed, defaults))
    return form_to_params(form)


def _changed(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The nested entries of ``values`` that differ from ``defaults``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(defaults.get(key), Mapping):
            nested = _changed(value, defaults[key])
            if nested:
                out[key] = nested
        elif defaults.get(key) != value:
            out[key] = value
    return out


def _absolute_locations(params: Params, project: Path) -> Params:
    """Point the registry and downloads at the project, not at the throwaway workspace."""
    reg, data = params.registry, params.data
    updates: dict[str, Any] = {}
    if reg.tracking_uri.startswith("sqlite:///") and not reg.tracking_uri.startswith("sqlite:////"):
        db = project / reg.tracking_uri.removeprefix("sqlite:///")
        updates["registry"] = reg.model_copy(
            update={
                "tracking_uri": f"sqlite:///{db}",
                "artifact_root": str(project / reg.artifact_root)
                if "://" not in reg.artifact_root
                else reg.artifact_root,
            }
        )
    updates["data"] = data.model_copy(update={"download_dir": str(project / data.download_dir)})
    # The accepted-data profile is shared by every run, so it lives in the project.
    updates["paths"] = params.paths.model_copy(
        update={"accepted": str(project / params.paths.accepted)}
    )
    return params.model_copy(update=updates)


def _link_tree(src: Path, dst: Path) -> None:
    # Hard links cost nothing and the stages never write into their inputs.
    def link(s: str, d: str) -> None:
        if os.path.lexists(d):  # a task retry refreshes the workspace in place
            os.unlink(d)
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(
        src,
        dst,
        copy_function=link,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


def _dvc(workspace: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=workspace,
        check=True,
        capture_output=True,
        text=True,
    )


def create_workspace(
    project: Path, run_id: str, overrides: Mapping[str, Any] | None = None
) -> Path:
    """Create (or, on a task retry, refresh) the workspace of one run; returns its path."""
    project = project.resolve()
    params = _absolute_locations(load_params(project / PARAMS_FILE, overrides), project)
    workspace = project / RUNS_DIR / re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    workspace.mkdir(parents=True, exist_ok=True)
    shutil.copy2(project / "dvc.yaml", workspace / "dvc.yaml")
    _link_tree(project / "src" / "mtrec", workspace / "src" / "mtrec")
    # Copied, not linked: GX writes its run state (validations, Data Docs) under gx/.
    shutil.copytree(
        project / "gx",
        workspace / "gx",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("uncommitted"),
    )
    raw_dir = Path(params.data.raw_dir)
    if not raw_dir.is_absolute() and (project / raw_dir).exists():
        _link_tree(project / raw_dir, workspace / raw_dir)
    write_params(params, workspace / PARAMS_FILE)
    if not (workspace / ".dvc").exists():
        _dvc(workspace, "init", "--no-scm", "-q")
        cache = project / ".dvc" / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        _dvc(workspace, "config", "cache.dir", str(cache))
    write_json(
        workspace / RUN_INFO,
        {"run_id": run_id, "project": str(project), "git_revision": git_revision(project)},
    )
    log.info("workspace for run %s: %s", run_id, workspace)
    return workspace


def foreach_stages(workspace: Path, stage: str) -> list[str]:
    """DVC's names for a ``foreach`` stage's items in this workspace's params, e.g.
    ``transfer@finetune`` (one per strategy) or ``curve@0.05`` (one per train fraction)."""
    params = load_params(workspace / PARAMS_FILE)
    items = {"transfer": params.transfer.strategies, "curve": params.curve.fractions}[stage]
    return [f"{stage}@{item}" for item in items]


def run_stage(workspace: Path, stage: str) -> None:
    """``dvc repro <stage>`` in the workspace, streaming its output into the task log."""
    info = read_json(workspace / RUN_INFO)
    env = os.environ | {
        # The stage commands call `python`: make it this interpreter, whatever the worker's PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MTREC_GIT_REVISION": info["git_revision"],
    }
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", stage],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.info("%s", line.rstrip())
            tail.append(line.rstrip())
    if proc.returncode != 0:
        raise StageFailed(
            f"stage {stage} failed in {workspace} (exit {proc.returncode}):\n" + "\n".join(tail)
        )


def project_params(project: Path) -> Params:
    """The project's own ``params.yaml``, registry and data locations made absolute: for tasks
    that act on the project (feedback, rollback) rather than in a run workspace."""
    project = Path(project).resolve()
    return _absolute_locations(load_params(project / PARAMS_FILE), project)
