"""Stage ``baselines``: single-domain baselines trained on the target's rows alone, one model
per seed (BPR matrix factorisation); ``evaluate`` scores them beside the strategies."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch

from mtrec.config import Params
from mtrec.core.bpr import BPRMF, fit_bpr
from mtrec.data.splitting import TARGET, TRAIN, VALID
from mtrec.data.tensors import domain_items
from mtrec.errors import ArtifactError
from mtrec.io import atomic_path, write_json
from mtrec.stages.modeling import load_processed

log = logging.getLogger(__name__)

BPR = "bpr"
REPORT = "baselines.json"


def bpr_path(params: Params, seed: int) -> Path:
    """The BPR checkpoint of one seed."""
    return Path(params.paths.baselines) / BPR / f"seed{seed}.pt"


def _pairs(frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(
        torch.as_tensor(frame[c].to_numpy("int64", copy=True)) for c in ("user_idx", "item_idx")
    )


def run(params: Params) -> None:
    """Train BPR-MF for every seed on the target train positives (early stopping on valid)."""
    data = load_processed(params)
    train, valid = (_pairs(data.positives(TARGET, split)) for split in (TRAIN, VALID))
    pool = torch.as_tensor(domain_items(data.items, TARGET))
    report = {}
    with atomic_path(Path(params.paths.baselines) / BPR) as out_dir:
        out_dir.mkdir(parents=True)
        for seed in params.eval.seeds:
            model, info = fit_bpr(
                train,
                valid,
                pool,
                data.meta["n_users"],
                data.meta["n_items"],
                params.baselines.bpr,
                seed,
            )
            model.save(out_dir / f"seed{seed}.pt")
            report[f"seed{seed}"] = info
    write_json(params.paths.report(REPORT), {BPR: report})


def load_bpr(params: Params) -> list[BPRMF]:
    """The BPR model of every seed."""
    paths = [bpr_path(params, seed) for seed in params.eval.seeds]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ArtifactError(f"{missing}: BPR checkpoints missing; run the baselines stage first")
    return [BPRMF.load(path) for path in paths]
