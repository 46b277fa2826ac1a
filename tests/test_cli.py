"""The command line a newcomer meets: ``make help``, ``python -m mtrec --help``, each stage's
own help, presets, and the nearest name suggested for a typo."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mtrec.__main__ import main
from mtrec.config import load_params, preset_names
from mtrec.stages import ALL_STAGES, STAGE_INFO, STAGES

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    assert done.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_stage_with_its_line(capsys) -> None:
    out = _help(capsys, "--help")
    for name in (*ALL_STAGES, "preset", "serve"):
        assert name in out
    for info in STAGE_INFO.values():
        assert info.summary in " ".join(out.split())


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_each_stage_has_its_own_help(capsys, stage) -> None:
    out = _help(capsys, stage, "--help")
    info = STAGE_INFO[stage]
    assert f"reads:  {info.reads}" in out and f"writes: {info.writes}" in out
    for section in info.params:
        assert f"\n  {section}: " in out  # the section and its keys
    assert ("[item]" in out) == bool(info.item)


def test_transfer_help_lists_the_strategies(capsys) -> None:
    assert "scratch, zero_shot, frozen, finetune" in _help(capsys, "transfer", "--help")


def test_stage_params_sections_are_the_ones_dvc_yaml_declares() -> None:
    """The help's params sections cannot drift from what DVC reruns a stage on."""
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        declared = []
        for key in stage.get("do", stage).get("params", []):
            section = key.split(".")[0]
            if section != "paths" and section not in declared:
                declared.append(section)
        assert STAGE_INFO[name].params == tuple(declared), name
    assert set(stages) == set(STAGES) | {"recommend"}


def test_a_mistyped_stage_suggests_the_nearest(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["prepocess"])
    assert done.value.code == 2
    assert "did you mean preprocess?" in capsys.readouterr().err


def test_a_stage_without_items_rejects_one(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["validate", "finetune"])
    assert "unrecognized arguments: finetune" in capsys.readouterr().err


def test_preset_list_names_each_shipped_preset_with_its_line(capsys, monkeypatch) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    assert main(["preset", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == preset_names(PROJECT_ROOT)
    assert all(len(line.split()) > 3 for line in lines)  # a description beside each name


def test_a_mistyped_preset_suggests_the_nearest(capsys, monkeypatch) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    assert main(["preset", "amazon-sport-phon"]) == 1
    assert "did you mean amazon-sport-phone?" in capsys.readouterr().err


def test_a_params_file_elsewhere_finds_the_projects_presets(tmp_path, monkeypatch) -> None:
    other = tmp_path / "other" / "params.yaml"
    other.parent.mkdir()
    shutil.copy2(PROJECT_ROOT / "params.yaml", other)
    monkeypatch.chdir(PROJECT_ROOT)
    assert main(["preset", "amazon-sport-phone", "--params", str(other)]) == 0
    assert load_params(other).data.dataset == "amazon-disencdr"
    assert load_params(PROJECT_ROOT / "params.yaml").data.dataset == "ml-latest-small"


def test_make_help_lists_every_target_with_a_line() -> None:
    out = subprocess.run(
        ["make", "-s", "help"], cwd=PROJECT_ROOT, text=True, capture_output=True, check=True
    ).stdout
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:"))
    listed = {line.split()[1]: line for line in out.splitlines()}
    assert set(listed) == set(phony.split()[1:])
    assert all(len(line.split()) > 3 for line in listed.values())
