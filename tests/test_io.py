import pytest

from mtrec.io import atomic_path, read_json, write_json


def test_failed_write_leaves_previous_file(tmp_path) -> None:
    target = tmp_path / "report.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half a rep")
        raise RuntimeError("killed mid-write")
    assert read_json(target) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_directory_is_replaced_whole(tmp_path) -> None:
    target = tmp_path / "models"
    for version in ("old", "new"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / f"{version}.pt").write_text(version)
    assert [p.name for p in target.iterdir()] == ["new.pt"]
