"""The default DVC remote works offline: push the pipeline's data, lose it, pull it back."""

import hashlib
import shutil

from ..conftest import run_dvc, run_stages


def _hashes(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in ("data/interim", "data/processed")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def test_push_then_pull_restores_the_data_byte_for_byte(project) -> None:
    # The pipeline's data up to preprocess, recorded as `dvc repro preprocess` records it.
    run_stages(project, "ingest", "validate", "preprocess")
    built = run_dvc(project, "commit", "--force", "--with-deps", "preprocess")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "up to date" in run_dvc(project, "status", "preprocess").stdout
    before = _hashes(project)
    pushed = run_dvc(project, "push")
    assert pushed.returncode == 0, pushed.stderr
    assert (project / "dvc-remote" / "files" / "md5").is_dir()

    for lost in ("data/interim", "data/processed", ".dvc/cache"):
        shutil.rmtree(project / lost)
    pulled = run_dvc(project, "pull", "--with-deps", "preprocess")
    assert pulled.returncode == 0, pulled.stderr
    assert _hashes(project) == before
    status = run_dvc(project, "status", "preprocess")
    assert "up to date" in status.stdout, status.stdout


def test_the_s3_remote_of_the_compose_stack_is_supported(project) -> None:
    """dvc-s3 is installed (the stack extra): DVC lists s3 among the remotes it supports."""
    version = run_dvc(project, "version")
    assert version.returncode == 0, version.stderr
    assert "s3 (s3fs" in version.stdout, version.stdout
