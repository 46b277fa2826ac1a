"""Stage ``curve <fraction>``: the transfer curve's extra points.

For one ``target.train_fraction`` it re-runs preprocessing in memory (same seed, so the same
users, items, split and cold users; only the target's train rows are thinned differently),
trains every strategy for every seed from the pretrained source models, and scores them on
that split's test rows exactly as ``evaluate`` does. The default fraction's point is the
``evaluate`` stage's own (not recomputed).
"""

from __future__ import annotations

import logging
from pathlib import Path

from mtrec.config import Params
from mtrec.core.multitask import MultiTaskModel
from mtrec.core.trainer import pick_device
from mtrec.data.canonical import CanonicalTables
from mtrec.data.preprocess import preprocess
from mtrec.io import write_json
from mtrec.stages.evaluate import evaluation_report
from mtrec.stages.modeling import ProcessedData
from mtrec.stages.parallel import map_runs, worker_count
from mtrec.stages.transfer import target_rows, train_strategy

log = logging.getLogger(__name__)

REPORTS = "curve"  # one <fraction>.json per point under paths.reports


def point_path(params: Params, fraction: float) -> Path:
    """The report of one curve point (named as dvc.yaml's foreach renders the fraction)."""
    return params.paths.report(REPORTS) / f"{fraction}.json"


def curve_strategies(params: Params) -> list[str]:
    """The strategies an extra point retrains: ``curve.strategies`` (all when null) among
    ``transfer.strategies``, in the latter's order."""
    wanted = params.curve.strategies
    return [s for s in params.transfer.strategies if wanted is None or s in wanted]


def curve_point(params: Params, tables: CanonicalTables, fraction: float) -> dict:
    """Train and score the curve's strategies (:func:`curve_strategies`) at ``fraction``."""
    params = params.model_copy(
        update={"target": params.target.model_copy(update={"train_fraction": fraction})}
    )
    out = preprocess(tables, params.target, params.preprocess, params.protocol)
    data = ProcessedData(out.interactions, out.items, out.users, out.meta)
    rows = target_rows(params, data)
    device = pick_device(params.transfer.train.device)
    strategies = curve_strategies(params)
    left_out = [s for s in params.transfer.strategies if s not in strategies]
    log.info(
        "curve point %g: retraining %s%s",
        fraction,
        ", ".join(strategies),
        f" (not {', '.join(left_out)}: curve.strategies; scored at the default fraction only)"
        if left_out
        else "",
    )
    runs = [(name, seed) for name in strategies for seed in params.eval.seeds]

    def train_run(run: tuple[str, int]) -> tuple[MultiTaskModel, dict]:
        model, info = train_strategy(params, data, *run, rows, device)
        # Scored on the CPU, as evaluate scores its checkpoints (the rows are CPU tensors).
        return model.cpu(), info

    workers = worker_count(params.parallel, device, len(runs))
    trained = dict(zip(runs, map_runs(train_run, runs, workers), strict=True))
    models = {name: [trained[name, seed][0] for seed in params.eval.seeds] for name in strategies}
    report = evaluation_report(params, data, models)
    return report | {"positives": data.meta["positives"]}


def run(params: Params, fraction: str | None = None) -> None:
    """Every point of ``curve.fractions`` (or just ``fraction``) but the default fraction."""
    fractions = params.curve.fractions if fraction is None else [float(fraction)]
    tables = CanonicalTables.load(params.paths.interim)
    for value in fractions:
        if params.protocol.single_domain:
            report = {"train_fraction": value, "skipped": "single-domain protocol: no thinning"}
        elif value == params.target.train_fraction:
            report = {"train_fraction": value, "skipped": "the default fraction: see evaluate"}
        else:
            report = curve_point(params, tables, value)
        write_json(point_path(params, value), report)
