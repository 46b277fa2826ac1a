"""Data-parallel training: shards, and torchrun with 2 CPU processes (gloo) against 1."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from mtrec.config import load_params
from mtrec.core.batches import TensorBatches
from mtrec.core.metrics import auc
from mtrec.core.models import load_model
from mtrec.data.splitting import SOURCE, VALID
from mtrec.data.tensors import task_columns
from mtrec.io import write_json
from mtrec.stages import preprocess
from mtrec.stages.modeling import load_processed
from mtrec.stages.validate import REPORT

from ..conftest import PROJECT_ROOT, tool_env

# Two ranks see the same rows in a different grouping and their own dropout draws, so the
# trajectories differ slightly; the models must agree this closely.
VALID_LOSS_TOLERANCE = 0.02  # relative
AUC_TOLERANCE = 0.01


def test_shards_are_disjoint_and_cover_every_row() -> None:
    columns = {"x": torch.arange(103)}
    seen = []
    for rank in range(3):
        gen = torch.Generator().manual_seed(7)  # every rank seeds alike
        batches = TensorBatches(columns, 10, True, gen, shard=(rank, 3))
        rows = torch.cat([b["x"] for b in batches])
        assert len(batches) == (len(rows) + 9) // 10
        seen.append(rows)
    everything = torch.cat(seen)
    assert sorted(everything.tolist()) == list(range(103))


@pytest.fixture(scope="module")
def processed_params(tmp_path_factory, canonical):
    root = tmp_path_factory.mktemp("ddp")
    paths = {n: str(root / n) for n in ("interim", "processed", "reports", "accepted")}
    params = load_params(PROJECT_ROOT / "params.yaml", {"paths": paths})
    canonical.save(paths["interim"])
    write_json(params.paths.report(REPORT), {"success": True})
    preprocess.run(params)
    return root, paths


def _pretrain(root, paths, name: str, processes: int):
    out = root / name
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["paths"] |= paths | {"pretrained": str(out / "models"), "reports": str(out / "reports")}
    raw["eval"]["seeds"] = [0]
    raw["pretrain"] |= {"epochs": 3, "patience": 3, "device": "cpu"}
    out.mkdir()
    (out / "params.yaml").write_text(yaml.safe_dump(raw))
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        if processes > 1
        else []
    )
    env = tool_env(root) | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            *launcher,
            "-m",
            "mtrec",
            "pretrain",
            "--params",
            str(out / "params.yaml"),
        ],
        env=env,
        text=True,
        capture_output=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((out / "reports" / "pretrain.json").read_text())["seed0"]
    return report, load_model(out / "models" / "seed0.pt"), result.stderr


def test_two_gloo_processes_match_one(processed_params) -> None:
    root, paths = processed_params
    single, single_model, _ = _pretrain(root, paths, "one", 1)
    double, double_model, log = _pretrain(root, paths, "two", 2)
    assert "stage pretrain done" in log and log.count("stage pretrain done") == 1  # rank 0 only
    assert double["valid_loss"] == pytest.approx(single["valid_loss"], rel=VALID_LOSS_TOLERANCE)
    params = load_params(PROJECT_ROOT / "params.yaml", {"paths": paths})
    rows = task_columns(load_processed(params).rows(SOURCE, VALID))
    scores = [
        auc(model.eval()(rows["user"], rows["item"])["click"].detach(), rows["click"])
        for model in (single_model, double_model)
    ]
    assert scores[1] == pytest.approx(scores[0], abs=AUC_TOLERANCE)
    # The models are not copies of each other: the second really trained in parallel.
    assert not torch.equal(
        single_model.encoder.user_embedding.weight, double_model.encoder.user_embedding.weight
    )
