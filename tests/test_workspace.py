import os
import shutil
import subprocess
import sys

import pytest
import yaml

from mtrec.config import form_defaults, load_params
from mtrec.errors import ConfigError
from mtrec.workspace import (
    clean_runs,
    create_workspace,
    form_overrides,
    run_stage,
    serving_workspace,
    workspace_name,
)

from .conftest import make_project

FORM = {
    "target_genres": ["Horror"],
    "strategies": ["scratch", "finetune"],
    "pretrain_epochs": 4,
    "transfer_epochs": 3,
    "seeds": ["7"],  # the form's seed box sends text lines
    "promote": False,
    "architecture": "mmoe",
}


def test_form_maps_onto_params_sections() -> None:
    assert form_overrides(FORM) == {
        "target": {"genres": ["Horror"]},
        "transfer": {"strategies": ["scratch", "finetune"], "train": {"epochs": 3}},
        "pretrain": {"epochs": 4},
        "eval": {"seeds": ["7"]},
        "registry": {"promote": False},
        "model": {"architecture": "mmoe"},
    }


def test_an_untouched_form_runs_params_yaml_as_it_is(tmp_path) -> None:
    project = make_project(tmp_path)
    params = load_params(project / "params.yaml")
    untouched = form_defaults(params) | {"preset": None}
    assert load_params(project / "params.yaml", form_overrides(untouched, project)) == params
    assert untouched["pretrain_epochs"] == params.pretrain.epochs  # each its own field
    assert untouched["transfer_epochs"] == params.transfer.train.epochs
    assert load_params(project / "params.yaml", form_overrides(FORM)).eval.seeds == [7]


def test_a_preset_applies_under_the_fields_the_operator_changed(tmp_path) -> None:
    project = make_project(tmp_path)
    untouched = form_defaults(load_params(project / "params.yaml"))
    form = untouched | {"preset": "amazon-sport-phone", "seeds": [7]}
    params = load_params(project / "params.yaml", form_overrides(form, project))
    assert params.target.domain == "phone" and params.protocol.name == "dataset"
    assert params.eval.seeds == [7]  # changed in the form: wins over the preset
    # untouched fields (MovieLens genres from params.yaml) do not override the preset
    assert params.target.genres == load_params(project / "params.yaml").target.genres
    assert params.pretrain.task_weights["category"] == 0.0


def test_workspace_holds_the_runs_params_and_shares_the_cache(tmp_path) -> None:
    project = make_project(tmp_path)
    workspace = create_workspace(project, "manual__2026-11-29T10:00:00+00:00", form_overrides(FORM))
    assert workspace.parent == project / "runs"
    assert workspace.name.startswith("manual__2026-11-29T10_00_00_00_00-")
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    assert params["target"]["genres"] == ["Horror"] and params["eval"]["seeds"] == [7]
    assert params["registry"]["tracking_uri"] == f"sqlite:///{project.resolve()}/mlflow.db"
    assert params["paths"]["accepted"] == str(project.resolve() / "data" / "accepted")
    for path in (
        "dvc.yaml",
        "src/mtrec/config.py",
        "gx/expectations/interactions.json",
        "data/ml-latest-small/ratings.csv",
    ):
        assert (workspace / path).exists(), path
    cache = subprocess.run(
        [sys.executable, "-m", "dvc", "config", "cache.dir"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert cache == str(project.resolve() / ".dvc" / "cache")
    # A task retry reuses the same workspace.
    assert (
        create_workspace(project, "manual__2026-11-29T10:00:00+00:00", form_overrides(FORM))
        == workspace
    )


def test_invalid_form_values_fail_before_anything_runs(tmp_path) -> None:
    project = make_project(tmp_path)
    with pytest.raises(ConfigError, match=r"registry\.strategy"):
        create_workspace(project, "bad", form_overrides({"strategies": ["scratch"]}))
    assert not (project / "runs").exists()


def test_distinct_run_ids_get_distinct_workspaces() -> None:
    names = {workspace_name(run_id) for run_id in ("x:y", "x+y", "x_y", "x y", ".x_y")}
    assert len(names) == 5
    assert all(not name.startswith(".") for name in names)


@pytest.mark.parametrize("run_id", ["../../etc", "a/b", "..", "", "x/../../y", "a\\b"])
def test_run_ids_with_path_tricks_are_rejected(tmp_path, run_id) -> None:
    project = make_project(tmp_path)
    with pytest.raises(ConfigError, match="run id"):
        create_workspace(project, run_id, {})
    assert not (project / "runs").exists()


def test_unknown_form_keys_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown trigger-form keys \['epoch'\]"):
        form_overrides({"epoch": 3, "seeds": [1]})


def test_seeds_are_bounded(tmp_path) -> None:
    project = make_project(tmp_path)
    with pytest.raises(ConfigError, match=r"runs\.max_seeds = 10"):
        create_workspace(project, "many", form_overrides({"seeds": list(range(11))}))
    with pytest.raises(ConfigError, match="outside"):
        form_overrides({"seeds": [2**32]})
    assert not (project / "runs").exists()


def _cache_objects(project) -> set[str]:
    files = (project / ".dvc" / "cache" / "files").rglob("*")
    return {str(p.relative_to(project)) for p in files if p.is_file()}


def test_cleanup_keeps_the_newest_workspaces_and_the_cache_they_use(tmp_path) -> None:
    project = make_project(tmp_path)
    # Distinct like thresholds: distinct canonical tables, so each run has objects of its own.
    runs = {}
    for i, threshold in enumerate((2.0, 3.0, 4.0)):
        runs[threshold] = create_workspace(
            project, f"manual__{i}", {"data": {"like_threshold": threshold}}
        )
        run_stage(runs[threshold], "ingest")
        os.utime(runs[threshold] / "run.json", (1000 + i, 1000 + i))  # creation order
        if threshold == 2.0:
            oldest_objects = _cache_objects(project)

    result = clean_runs(project, keep=2)

    assert result == {"kept": [runs[4.0].name, runs[3.0].name], "removed": [runs[2.0].name]}
    assert not runs[2.0].exists()
    after = _cache_objects(project)
    assert after and not oldest_objects <= after  # the removed run's own tables are gone
    for kept in (runs[3.0], runs[4.0]):  # every kept output can still come from the cache
        shutil.rmtree(kept / "data" / "staged")
        check = subprocess.run(
            [sys.executable, "-m", "dvc", "checkout", "ingest"],
            cwd=kept,
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stderr
        assert (kept / "data" / "staged" / "interactions.parquet").exists()

    # As in the Docker image: the project holds the shared cache but is no DVC repo.
    (project / ".dvc" / "config").unlink()
    assert clean_runs(project, keep=2)["removed"] == []
    assert _cache_objects(project) == after


def test_serving_follows_the_newest_run_that_registered_the_model(tmp_path) -> None:
    project = make_project(tmp_path)
    assert serving_workspace(project, "mtrec") is None  # no runs yet
    older = create_workspace(project, "manual__1")
    other_target = create_workspace(project, "manual__2", {"target": {"genres": ["Horror"]}})
    unregistered = create_workspace(project, "manual__3")
    for i, workspace in enumerate((older, other_target, unregistered)):
        os.utime(workspace / "run.json", (1000 + i, 1000 + i))  # creation order
    for workspace in (older, other_target):
        (workspace / "reports").mkdir()
        (workspace / "reports" / "registration.json").write_text("{}")

    assert serving_workspace(project, "mtrec") == older  # the newest ran no register yet
    assert serving_workspace(project, "mtrec-horror") == other_target
    assert serving_workspace(project, "mtrec-nothing") is None
