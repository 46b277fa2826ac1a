import subprocess
import sys

import pytest
import yaml

from mtrec.config import form_defaults, load_params
from mtrec.errors import ConfigError
from mtrec.workspace import create_workspace, form_overrides

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
    assert workspace == project / "runs" / "manual__2026-11-29T10_00_00_00_00"
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
