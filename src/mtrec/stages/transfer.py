"""Stage ``transfer``: target-domain models, one per strategy and seed."""

from __future__ import annotations

import logging

from mtrec.config import Params
from mtrec.core.trainer import fit, pick_device
from mtrec.core.transfer import get_strategy
from mtrec.data.splitting import TARGET, TRAIN, VALID
from mtrec.data.tensors import task_columns
from mtrec.io import atomic_path, write_json
from mtrec.stages.modeling import build_model, load_checkpoint, load_processed, pretrained_path

log = logging.getLogger(__name__)


def run(params: Params) -> None:
    """Prepare each strategy's starting point, then train on target train rows."""
    data = load_processed(params)
    train, valid = (task_columns(data.rows(TARGET, s)) for s in (TRAIN, VALID))
    cfg = params.transfer.train
    device = pick_device(cfg.device)
    report: dict[str, dict] = {}
    with atomic_path(params.paths.transferred) as out_dir:
        for name in params.transfer.strategies:
            strategy = get_strategy(name)
            (out_dir / name).mkdir(parents=True)
            for seed in params.eval.seeds:
                source = (
                    load_checkpoint(pretrained_path(params, seed))
                    if strategy.needs_source
                    else None
                )
                model = strategy.prepare(build_model(params, data, seed), source)
                result = fit(model, train, valid, cfg, seed, device)
                model.cpu().save(out_dir / name / f"seed{seed}.pt")
                report.setdefault(name, {})[f"seed{seed}"] = {
                    "best_epoch": result.best_epoch,
                    "seconds": result.seconds,
                    "valid_loss": result.best_valid_loss,
                }
                log.info("%s seed %d: %s", name, seed, report[name][f"seed{seed}"])
    write_json(params.paths.report("transfer.json"), report)
