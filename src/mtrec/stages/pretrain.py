"""Stage ``pretrain``: multi-task model on the source domain, one checkpoint per seed."""

from __future__ import annotations

import logging

from mtrec.config import Params
from mtrec.core import distributed
from mtrec.core.trainer import fit, pick_device
from mtrec.data.splitting import SOURCE, TRAIN, VALID
from mtrec.data.tensors import task_columns
from mtrec.io import write_json
from mtrec.stages.modeling import (
    build_model,
    load_processed,
    negatives_refresh,
    output_path,
    ranking_loss,
    valid_monitor,
)
from mtrec.stages.parallel import map_runs, worker_count

log = logging.getLogger(__name__)
SKIPPED = "SKIPPED.txt"


def run(params: Params) -> None:
    """Train on source train rows, early-stop on source valid rows."""
    data = load_processed(params)
    train, valid = (task_columns(data.rows(SOURCE, s)) for s in (TRAIN, VALID))
    device = pick_device(params.pretrain.device)
    monitor = (
        None
        if params.protocol.single_domain
        else valid_monitor(params, params.pretrain, data, SOURCE)
    )
    report: dict = {}
    with output_path(params.paths.pretrained) as out_dir:
        out_dir.mkdir()
        # Single-domain protocols have no source rows: an empty output keeps the DAG uniform.
        seeds = [] if params.protocol.single_domain else params.eval.seeds
        if not seeds:
            report["skipped"] = f"protocol {params.protocol.name} has no source domain"
            log.info("%s: nothing to pretrain", report["skipped"])
            # Says why the folder holds no model (DVC would warn that the output is empty).
            (out_dir / SKIPPED).write_text(report["skipped"] + "\n")

        def pretrain_seed(seed: int) -> dict:
            model = build_model(params, data, seed)
            refresh = negatives_refresh(params.pretrain, data)
            result = fit(
                model,
                train,
                valid,
                params.pretrain,
                seed,
                device,
                refresh=refresh,
                monitor=monitor,
                ranking=ranking_loss(params.pretrain, data),
            )
            model.cpu().save(out_dir / f"seed{seed}.pt")
            # No wall time in the report: it is a DVC output, which must not change run to run.
            info = {
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "valid_loss": result.best_valid_loss,
            }
            log.info("pretrained seed %d in %.1f s: %s", seed, result.seconds, info)
            return info

        infos = map_runs(pretrain_seed, seeds, worker_count(params.parallel, device, len(seeds)))
        report |= {f"seed{seed}": info for seed, info in zip(seeds, infos, strict=True)}
    if distributed.current().main:
        write_json(params.paths.report("pretrain.json"), report)
