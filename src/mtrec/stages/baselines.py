"""Stage ``baselines``: BPR-trained baselines, one model per seed: BPR matrix factorisation
and LightGCN on the target's rows alone, and (opt-in) LightGCN on the source's rows too;
``evaluate`` scores them beside the strategies and popularity."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtrec.config import Params
from mtrec.core.bpr import BPRMF, fit_bpr, fit_lightgcn
from mtrec.data.splitting import SOURCE, TARGET, TRAIN, VALID
from mtrec.data.tensors import domain_items, ranking_task
from mtrec.errors import ArtifactError, ConfigError
from mtrec.io import atomic_path, write_json
from mtrec.stages.modeling import TIMING, ProcessedData, load_processed
from mtrec.stages.parallel import map_runs, worker_count

log = logging.getLogger(__name__)

BPR = "bpr"
LIGHTGCN = "lightgcn"
LIGHTGCN_JOINT = "lightgcn_joint"
# name -> trainer; all export dot-product tables (BPRMF checkpoints).
TRAINERS = {BPR: fit_bpr, LIGHTGCN: fit_lightgcn, LIGHTGCN_JOINT: fit_lightgcn}
# Baselines that train on the source's clicks too, with their single-domain twin's settings.
JOINT = {LIGHTGCN_JOINT: LIGHTGCN}
NAMES = tuple(TRAINERS)
REPORT = "baselines.json"


def checkpoint_path(params: Params, name: str, seed: int) -> Path:
    """The checkpoint of baseline ``name`` for one seed."""
    return Path(params.paths.baselines) / name / f"seed{seed}.pt"


def _pairs(frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(
        torch.as_tensor(frame[c].to_numpy("int64", copy=True)) for c in ("user_idx", "item_idx")
    )


def train_baseline(params: Params, data: ProcessedData, name: str, seed: int) -> tuple[BPRMF, dict]:
    """Train baseline ``name`` on the target train positives (a joint one on the source's
    too), early stopping on the full ranking of the target's valid positives (train ones
    masked)."""
    train = data.positives(TARGET, TRAIN)
    valid = ranking_task(train, data.positives(TARGET, VALID), domain_items(data.items, TARGET))
    domains = (TARGET, SOURCE) if name in JOINT else (TARGET,)
    positives, pools = [], []
    for domain in domains:
        rows = data.positives(domain, TRAIN)
        if rows.empty:
            raise ConfigError(
                f"baselines.models: {name} trains on the {domain} domain's clicks too, and "
                f"this protocol ({params.protocol.name}) has none; drop it from the list"
            )
        positives.append(_pairs(rows))
        # Negatives among the items of the domain's training graph, as RecBole draws them
        # among the items its dataset holds: an item nobody took is an easy negative that
        # teaches little (on RecBole's ml-latest-small split a quarter of the catalogue).
        items = np.intersect1d(domain_items(data.items, domain), rows["item_idx"].unique())
        pools.append(torch.as_tensor(items))
    source = (
        {"source_weight": params.baselines.lightgcn_joint.source_weight} if name in JOINT else {}
    )
    return TRAINERS[name](
        positives,
        valid,
        pools,
        data.meta["n_users"],
        data.meta["n_items"],
        getattr(params.baselines, JOINT.get(name, name)),
        seed,
        params.eval.k,
        params.eval.user_block,
        **source,
    )


def run(params: Params) -> None:
    """Train every baseline for every seed; write the checkpoints and their training record."""
    data = load_processed(params)
    names = params.baselines.models
    jobs = [(name, seed) for name in names for seed in params.eval.seeds]
    # In single-threaded worker processes, as the transfer stage trains: on a CPU that is
    # faster, and the weights come out bit for bit the same every run (trained on the stage's
    # two threads they differed between runs, so `dvc repro` rewrote dvc.lock).
    workers = worker_count(params.parallel, torch.device("cpu"), len(jobs))
    runs = map_runs(lambda job: train_baseline(params, data, *job), jobs, workers)
    trained = dict(zip(jobs, runs, strict=True))
    report: dict[str, dict] = {}
    for name in names:
        report[name] = {}
        with atomic_path(Path(params.paths.baselines) / name) as out_dir:
            out_dir.mkdir(parents=True)
            for seed in params.eval.seeds:
                model, info = trained[name, seed]
                model.save(out_dir / f"seed{seed}.pt")
                log.info("%s seed %d trained in %.1f s", name, seed, info["train_seconds"])
                report[name][f"seed{seed}"] = {k: v for k, v in info.items() if k not in TIMING}
    write_json(params.paths.report(REPORT), report)


def load_baselines(params: Params) -> dict[str, list[BPRMF]]:
    """Every listed baseline's model of every seed, by name."""
    paths = {
        name: [checkpoint_path(params, name, s) for s in params.eval.seeds]
        for name in params.baselines.models
    }
    missing = [str(p) for group in paths.values() for p in group if not p.exists()]
    if missing:
        raise ArtifactError(f"{missing}: baseline checkpoints missing; run the baselines stage")
    return {name: [BPRMF.load(p) for p in group] for name, group in paths.items()}
