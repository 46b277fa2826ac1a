"""Which training graph a graph model (model.graph_layers > 0) of each strategy propagates over."""

import pytest
import torch

from mtrec.config import Params, load_params
from mtrec.core.trainer import pick_device
from mtrec.data.canonical import CanonicalTables
from mtrec.data.splitting import TARGET
from mtrec.data.tensors import domain_items
from mtrec.io import write_json
from mtrec.stages import preprocess
from mtrec.stages.modeling import ProcessedData, load_processed
from mtrec.stages.transfer import Rows, fold_rows, target_rows, train_strategy
from mtrec.stages.validate import REPORT

from ..conftest import PROJECT_ROOT


@pytest.fixture
def graph_setup(tmp_path, canonical: CanonicalTables) -> tuple[Params, ProcessedData]:
    """A one-layer graph model's params (2 CV folds) and the bundled data preprocessed."""
    paths = {n: str(tmp_path / n) for n in ("interim", "processed", "reports", "accepted")}
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            "eval": {"seeds": [0]},
            "preprocess": {"cv_folds": 2},
            "model": {"item_tower": "id", "graph_layers": 1},
            "transfer": {"train": {"epochs": 1}},
            "parallel": {"workers": 1},
        },
    )
    canonical.save(paths["interim"])
    write_json(params.paths.report(REPORT), {"success": True})
    preprocess.run(params)
    return params, load_processed(params)


def edges(params: Params, data: ProcessedData, strategy: str, rows: Rows) -> torch.Tensor:
    """The (user, item) edges [2, E] the strategy's trained model propagates over."""
    model, _ = train_strategy(params, data, strategy, 0, rows, pick_device("cpu"))
    return model.encoder.graph_edges


def test_scratch_graph_holds_the_target_alone_joint_both_domains(graph_setup) -> None:
    params, data = graph_setup
    target = torch.as_tensor(domain_items(data.items, TARGET))
    rows = target_rows(params, data)
    # scratch uses no source data: a shared user's source items would reach it through the graph
    scratch = edges(params, data, "scratch", rows)[1]
    assert len(scratch) and torch.isin(scratch, target).all()
    assert len(scratch) == len(data.positives(TARGET, "train"))
    joint = edges(params, data, "joint", rows)[1]  # trains on source rows anyway: both domains
    assert not torch.isin(joint, target).all() and torch.isin(scratch, joint).all()


@pytest.mark.parametrize("strategy", ["scratch", "joint"])
def test_a_cross_validation_fold_keeps_its_held_out_positives_out_of_the_graph(
    graph_setup, strategy: str
) -> None:
    params, data = graph_setup
    fold_train, fit, held = fold_rows(data, target_rows(params, data), fold=0)
    pairs = {tuple(e) for e in edges(params, data, strategy, fold_train).T.tolist()}
    held_pairs = set(held.loc[held["click"] == 1, ["user_idx", "item_idx"]].itertuples(False))
    fit_pairs = set(fit.loc[fit["click"] == 1, ["user_idx", "item_idx"]].itertuples(False))
    assert held_pairs and fit_pairs and not held_pairs & fit_pairs
    assert fit_pairs <= pairs and not held_pairs & pairs
