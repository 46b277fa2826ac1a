"""A stage killed mid-write (SIGKILL, no cleanup) leaves its previous outputs intact."""

import hashlib
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml

from mtrec.config import load_params
from mtrec.data.canonical import CanonicalTables
from mtrec.io import write_json
from mtrec.stages import preprocess
from mtrec.stages.validate import REPORT

from ..conftest import tool_env

KILL_MID_WRITE = """
import os, signal
import pandas as pd
from mtrec.config import load_params
from mtrec.stages import preprocess

write = pd.DataFrame.to_parquet

def write_half_then_die(self, path, *args, **kwargs):
    write(self, path, *args, **kwargs)
    os.truncate(path, os.path.getsize(path) // 2)
    os.kill(os.getpid(), signal.SIGKILL)

pd.DataFrame.to_parquet = write_half_then_die
preprocess.run(load_params("params.yaml"))
"""


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_preprocess_killed_mid_write_keeps_the_previous_tables(
    project, canonical: CanonicalTables, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The previous, complete tables: ingest's tables (the session's copy), validate's verdict,
    # then a real preprocess run.
    monkeypatch.chdir(project)
    params = load_params("params.yaml")
    canonical.save(params.paths.interim)
    write_json(params.paths.report(REPORT), {"success": True})
    preprocess.run(params)
    processed = project / "data" / "processed"
    before = _hashes(processed)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["target"]["train_fraction"] = 0.3  # the new output would differ from the old one
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_MID_WRITE)],
        cwd=project,
        env=tool_env(project.parent),
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _hashes(processed) == before
    assert set(before) == {"interactions.parquet", "items.parquet", "users.parquet", "meta.json"}
