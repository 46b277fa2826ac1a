"""Which training graph a graph model (model.graph_layers > 0) of each strategy propagates over."""

import torch

from mtrec.config import load_params
from mtrec.core.trainer import pick_device
from mtrec.data.canonical import CanonicalTables
from mtrec.data.splitting import TARGET
from mtrec.data.tensors import domain_items
from mtrec.io import write_json
from mtrec.stages import preprocess
from mtrec.stages.modeling import load_processed
from mtrec.stages.transfer import target_rows, train_strategy
from mtrec.stages.validate import REPORT

from ..conftest import PROJECT_ROOT


def test_scratch_graph_holds_the_target_alone_joint_both_domains(
    tmp_path, canonical: CanonicalTables
) -> None:
    paths = {n: str(tmp_path / n) for n in ("interim", "processed", "reports", "accepted")}
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            "eval": {"seeds": [0]},
            "model": {"item_tower": "id", "graph_layers": 1},
            "transfer": {"train": {"epochs": 1}},
            "parallel": {"workers": 1},
        },
    )
    canonical.save(paths["interim"])
    write_json(params.paths.report(REPORT), {"success": True})
    preprocess.run(params)
    data = load_processed(params)
    target = torch.as_tensor(domain_items(data.items, TARGET))
    rows, device = target_rows(params, data), pick_device("cpu")

    def edge_items(strategy: str) -> torch.Tensor:
        model, _ = train_strategy(params, data, strategy, 0, rows, device)
        return model.encoder.graph_edges[1]

    # scratch uses no source data: a shared user's source items would reach it through the graph
    scratch = edge_items("scratch")
    assert len(scratch) and torch.isin(scratch, target).all()
    assert len(scratch) == len(data.positives(TARGET, "train"))
    joint = edge_items("joint")  # trains on source rows anyway: the graph of both domains
    assert not torch.isin(joint, target).all() and torch.isin(scratch, joint).all()
