"""Wall time and peak RSS of every pipeline stage, each run as ``python -m mtrec <stage>`` in
a scratch workspace (a temporary folder, never the project's data/, models/ or reports/)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

# `--quick-stages`: short settings for a quick look (one seed, two strategies, two epochs, one
# curve point). By default the bench runs the project's params.yaml unchanged.
QUICK = {
    "eval": {"seeds": [0]},
    "pretrain": {"epochs": 2},
    "transfer": {"strategies": ["scratch", "finetune"], "train": {"epochs": 2}},
    "curve": {"fractions": [0.2]},
    "baselines": {"bpr": {"epochs": 2}, "lightgcn": {"epochs": 2}},
}


def _merge(params: dict, overrides: dict) -> None:
    # Only keys params.yaml has: a section another branch has not added yet is skipped.
    for key, value in overrides.items():
        if key not in params:
            continue
        if isinstance(value, dict):
            _merge(params[key], value)
        else:
            params[key] = value


def prepare(project: Path, workspace: Path, quick: bool) -> list[list[str]]:
    """Lay out the workspace (params, GX suites, raw data linked) and list the stage commands
    in pipeline order."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    if quick:
        _merge(params, QUICK)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(project / "gx", workspace / "gx", ignore=shutil.ignore_patterns("uncommitted"))
    raw = Path(params["data"]["raw_dir"])
    (workspace / raw).parent.mkdir(parents=True, exist_ok=True)
    (workspace / raw).symlink_to((project / raw).resolve())
    return stage_commands(project, params)


def stage_commands(project: Path, params: dict) -> list[list[str]]:
    """``python -m mtrec ...`` argument lists in dvc.yaml's order, ``foreach`` stages
    expanded over their params list (so stages added to dvc.yaml are timed too)."""
    commands = []
    for spec in yaml.safe_load((project / "dvc.yaml").read_text())["stages"].values():
        if "foreach" in spec:
            value: object = params
            for key in spec["foreach"].strip("${}").split("."):
                value = value[key]  # type: ignore[index]
            cmds = [spec["do"]["cmd"].replace("${item}", str(item)) for item in value]
        else:
            cmds = [spec["cmd"]]
        commands += [cmd.split("python -m mtrec ", 1)[1].split() for cmd in cmds]
    return commands


def time_stage(workspace: Path, stage: list[str], threads: int) -> dict:
    """Run one stage in its own process; its wall time and peak RSS (getrusage of the
    child: the maximum over every child so far, so each stage runs in a fresh wrapper)."""
    wrapper = (
        "import resource, subprocess, sys, json;"
        "rc = subprocess.run(sys.argv[1:]).returncode;"
        "print(json.dumps({'rc': rc, 'maxrss_kb':"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"
    )
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "GX_ANALYTICS_ENABLED": "False"}
    env.pop("MLFLOW_TRACKING_URI", None)  # register into the workspace's own mlflow.db
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, "-m", "mtrec", *stage],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    info = {"rc": done.returncode, "maxrss_kb": 0}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        info = json.loads(lines[-1])
    result = {
        "stage": " ".join(stage),
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(info["maxrss_kb"] / 1024, 1),
        "ok": info["rc"] == 0,
    }
    if info["rc"] != 0:
        result["error"] = done.stderr.strip().splitlines()[-1:] or ["?"]
    return result


def run_pipeline(project: Path, workspace: Path, quick: bool, threads: int) -> list[dict]:
    """Every stage in order; stops at the first failure (later stages need its outputs)."""
    results = []
    for stage in prepare(project, workspace, quick):
        results.append(time_stage(workspace, stage, threads))
        print(f"  stage {results[-1]}", file=sys.stderr, flush=True)
        if not results[-1]["ok"]:
            break
    return results
