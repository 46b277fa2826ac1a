"""Per-run DVC workspaces: how Airflow runs the same stages ``dvc repro`` runs on a laptop.

Each DAG run gets ``runs/<run_id>/`` holding its own ``params.yaml`` (defaults ⊕ trigger
form), ``dvc.yaml``, the code and raw data it depends on, and a DVC config pointing at the
project's shared cache. A task runs ``dvc repro <stage>`` there: unchanged stages are restored
from the run-cache instead of recomputed, concurrent runs never share a workspace lock, and the
run's ``dvc.lock`` records every data and model hash for the registry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtrec.config import (
    FORM_FIELDS,
    PARAMS_FILE,
    Params,
    deep_merge,
    form_defaults,
    form_to_params,
    load_params,
    read_preset,
    registered_model_name,
    write_params,
)
from mtrec.errors import ERROR_FILE_ENV, ConfigError, StageFailed, StageRejected
from mtrec.io import read_json, write_json
from mtrec.registry import git_revision
from mtrec.summary import REGISTRATION

log = logging.getLogger(__name__)

RUNS_DIR = "runs"
RUN_INFO = "run.json"
_TAIL_LINES = 40
# The trigger form's fields (dags/mtrec_training.py); anything else in a run's conf is a typo.
FORM_KEYS = frozenset({"preset", *FORM_FIELDS})
# numpy and torch seeds are unsigned 32-bit.
_SEED_RANGE = range(2**32)


def form_overrides(form: Mapping[str, Any], project: Path | None = None) -> dict[str, Any]:
    """Map the Airflow trigger form's fields onto nested params overrides: the chosen dataset
    preset (``configs/<preset>.yaml`` of ``project``) first, the other fields on top.
    A key that is not a form field is a :class:`ConfigError`, never silently dropped."""
    unknown = sorted(set(form) - FORM_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown trigger-form keys {unknown}; the form takes {sorted(FORM_KEYS)}"
        )
    if form.get("preset"):
        if project is None:
            raise ValueError("a preset needs the project directory it lives in")
        # The form's fields default to params.yaml's values: only the ones the operator changed
        # go on top of the preset (an untouched genre list must not override the preset's).
        defaults = form_overrides(form_defaults(load_params(project / PARAMS_FILE)))
        changed = form_overrides(dict(form, preset=None))
        return deep_merge(read_preset(project, form["preset"]), _changed(changed, defaults))
    try:
        seeds = [int(s) for s in form.get("seeds", ())]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"seeds must be whole numbers, one per line: {exc}") from exc
    bad = [s for s in seeds if s not in _SEED_RANGE]
    if bad:
        raise ConfigError(f"seeds {bad} are outside 0 .. 2**32 - 1")
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


def workspace_name(run_id: str) -> str:
    """``runs/`` folder of a run: its id made file-name safe, plus a digest of the exact id, so
    that ids differing only in unsafe characters (``x:y``, ``x+y``) never share a workspace."""
    if not run_id or "/" in run_id or "\\" in run_id or ".." in run_id or "\0" in run_id:
        raise ConfigError(f"run id {run_id!r} is not usable as a folder name ('/', '..', empty)")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).lstrip(".")
    return f"{safe}-{hashlib.sha256(run_id.encode()).hexdigest()[:12]}"


def create_workspace(
    project: Path, run_id: str, overrides: Mapping[str, Any] | None = None
) -> Path:
    """Create (or, on a task retry, refresh) the workspace of one run; returns its path."""
    project = project.resolve()
    params = _absolute_locations(load_params(project / PARAMS_FILE, overrides), project)
    if len(params.eval.seeds) > params.runs.max_seeds:
        raise ConfigError(
            f"{len(params.eval.seeds)} seeds asked for; a run takes at most runs.max_seeds = "
            f"{params.runs.max_seeds} (each seed trains every strategy once more)"
        )
    workspace = project / RUNS_DIR / workspace_name(run_id)
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
    """``dvc repro <stage>`` in the workspace, streaming its output into the task log.

    The stage's expected failure (:class:`MtrecError`: data gate, config, missing input) raises
    :class:`StageRejected`; any other non-zero exit (a crash, a kill) :class:`StageFailed`.
    ``dvc repro`` runs in a process group of its own, stopped with everything in it (the stage,
    its training workers) when this call ends early: a SIGTERM (Airflow killing the task) or an
    exception (Airflow's execution timeout) stops the stage instead of orphaning it.
    """
    info = read_json(workspace / RUN_INFO)
    grace = load_params(workspace / PARAMS_FILE).runs.stop_grace
    error_file = workspace / f".error-{stage}.json"
    error_file.unlink(missing_ok=True)
    env = os.environ | {
        # The stage commands call `python`: make it this interpreter, whatever the worker's PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MTREC_GIT_REVISION": info["git_revision"],
        ERROR_FILE_ENV: str(error_file),
    }
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    with (
        subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro", stage],
            cwd=workspace,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        ) as proc,
        _group_stopped_on_exit(proc, grace),
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.info("%s", line.rstrip())
            tail.append(line.rstrip())
        proc.wait()
    if proc.returncode == 0:
        return
    if error_file.exists():
        error = read_json(error_file)
        raise StageRejected(f"stage {stage}: {error['error']}: {error['message']}")
    raise StageFailed(
        f"stage {stage} failed in {workspace} (exit {proc.returncode}):\n" + "\n".join(tail)
    )


@contextmanager
def _group_stopped_on_exit(proc: subprocess.Popen, grace: float) -> Iterator[None]:
    """Stop ``proc``'s process group when the block ends, however it ends; a SIGTERM to this
    process stops the group first, then goes on to the handler that was there (Airflow's)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            _stop_group(proc, grace)
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _stop_group(proc, grace)


def _stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the group (DVC and the stage stop cleanly), SIGKILL after ``grace`` seconds;
    also reaps what is left after DVC exited (a stage's orphaned workers)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return  # the group is empty
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        if not _group_alive(proc.pid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def project_params(project: Path) -> Params:
    """The project's own ``params.yaml``, registry and data locations made absolute: for tasks
    that act on the project (feedback, rollback) rather than in a run workspace."""
    project = Path(project).resolve()
    return _absolute_locations(load_params(project / PARAMS_FILE), project)


def _newest_first(project: Path) -> list[Path]:
    """The project's run workspaces, the most recently created first."""
    runs = project / RUNS_DIR
    return sorted(
        (p for p in runs.iterdir() if p.is_dir()) if runs.exists() else [],
        key=lambda p: (p / RUN_INFO if (p / RUN_INFO).exists() else p).stat().st_mtime,
        reverse=True,
    )


def serving_workspace(project: Path, model_name: str) -> Path | None:
    """The newest run workspace that registered into ``model_name`` (its recommendations are
    the ones served for that model), or None when no run has."""
    for workspace in _newest_first(Path(project).resolve()):
        if not (workspace / PARAMS_FILE).is_file():
            continue  # cut short before its params were written
        params = load_params(workspace / PARAMS_FILE)
        registered = (workspace / params.paths.report(REGISTRATION)).is_file()
        if registered and registered_model_name(params) == model_name:
            return workspace
    return None


def clean_runs(project: Path, keep: int) -> dict[str, list[str]]:
    """Delete all but the ``keep`` newest run workspaces, then the DVC cache objects that
    neither the project nor a kept workspace uses (``dvc gc --workspace --projects``)."""
    project = Path(project).resolve()
    workspaces = _newest_first(project)
    kept, removed = workspaces[:keep], workspaces[keep:]
    for workspace in removed:
        shutil.rmtree(workspace)
        log.info("removed run workspace %s", workspace)
    # A workspace whose creation was cut short before `dvc init` uses no cache. The project is
    # a DVC repo on a laptop; in the image it only holds the cache, so a workspace runs gc.
    repos = [p for p in kept if (p / ".dvc" / "config").is_file()]
    if (project / ".dvc" / "config").is_file():
        repos.insert(0, project)
    if repos:
        _dvc(repos[0], "gc", "--workspace", "--force", "--projects", *map(str, repos[1:]))
    return {"kept": [p.name for p in kept], "removed": [p.name for p in removed]}
