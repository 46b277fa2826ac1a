"""Every architecture, encoder and transfer strategy runs through the real training and
evaluation stages on the bundled data, and the transfer report is built from them."""

import json
from pathlib import Path

import pytest

from mtrec.config import load_params
from mtrec.core.models import ARCHITECTURES
from mtrec.core.transfer import STRATEGIES
from mtrec.io import write_json
from mtrec.stages import baselines, curve, evaluate, preprocess, pretrain, report, transfer
from mtrec.stages.validate import REPORT

from ..conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def processed(tmp_path_factory, canonical) -> dict[str, str]:
    root = tmp_path_factory.mktemp("arch")
    paths = {n: str(root / n) for n in ("interim", "processed", "reports", "accepted")}
    params = load_params(PROJECT_ROOT / "params.yaml", {"paths": paths})
    canonical.save(paths["interim"])
    write_json(params.paths.report(REPORT), {"success": True})
    preprocess.run(params)
    return paths


# shared_bottom (the default) runs in every other stage test; the rest here, on one epoch.
OTHERS = sorted(set(ARCHITECTURES) - {"shared_bottom"})
# Smaller experts and history than params.yaml's (a third of the time): the same gating,
# levels and attention code runs, and the assertions are about wiring and better-than-chance.
SMALL = {"mmoe": {"n_experts": 2}, "ple": {"n_experts": 2, "expert_dims": [32]}}
MODELS = [{"architecture": a, **SMALL.get(a, {})} for a in OTHERS] + [
    {
        "text_encoder": "cnn",
        "user_history": "transformer",
        "history_length": 4,
        "embedding_dim": 16,
    }
]


@pytest.mark.parametrize("model", MODELS, ids=[*OTHERS, "cnn+history"])
def test_model_trains_transfers_and_evaluates(processed, model, tmp_path) -> None:
    paths = processed | {
        n: str(tmp_path / n) for n in ("pretrained", "transferred", "baselines", "reports")
    }
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            "model": model,
            "eval": {"seeds": [0]},
            "pretrain": {"epochs": 1},
            "transfer": {"strategies": ["scratch", "finetune"], "train": {"epochs": 1}},
            "baselines": {"bpr": {"epochs": 1}, "lightgcn": {"epochs": 1}},
        },
    )
    for stage in (pretrain, transfer, baselines, evaluate):
        stage.run(params)
    metrics = json.loads(params.paths.report(evaluate.METRICS_FILE).read_text())
    for strategy in ("scratch", "finetune"):
        scores = metrics["strategies"][strategy]
        assert 0.0 < scores["ndcg@10"]["mean"] <= 1.0
        assert 0.5 < scores["click_auc"]["mean"] <= 1.0  # better than chance after one epoch


def test_every_strategy_runs_is_evaluated_and_reported(processed, tmp_path) -> None:
    strategies = list(STRATEGIES)
    paths = processed | {
        n: str(tmp_path / n) for n in ("pretrained", "transferred", "baselines", "reports")
    }
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            # Half-width layers (a third less time): what is checked is that every strategy
            # runs, is scored and reported, not how well.
            "model": {"embedding_dim": 16, "bottom_dims": [32, 16], "tower_dims": [8]},
            "eval": {"seeds": [0, 1], "sampled_negatives": 50},
            "pretrain": {"epochs": 1},
            "transfer": {"strategies": strategies, "train": {"epochs": 1}},
            "curve": {"fractions": [0.2, 0.5]},
            "baselines": {"bpr": {"epochs": 2}, "lightgcn": {"epochs": 2}},
        },
    )
    for stage in (pretrain, transfer, baselines, evaluate, curve, report):
        stage.run(params)
    zero_shot = json.loads(transfer.report_path(params, "zero_shot").read_text())
    assert zero_shot["seeds"]["seed0"] == {"trained": False}
    weighted = json.loads(transfer.report_path(params, "sample_weighted").read_text())
    assert 0.0 < weighted["seeds"]["seed1"]["source_weights"]["ess_share"] < 1.0
    metrics = json.loads(params.paths.report(evaluate.METRICS_FILE).read_text())
    assert set(metrics["strategies"]) == {*strategies, "popularity", "bpr", "lightgcn"}
    assert metrics["cold_users"] > 0
    for name in [*strategies, "popularity", "bpr", "lightgcn"]:
        scores = metrics["strategies"][name]
        for metric in ("ndcg@10", "cold_ndcg@10", "sampled_ndcg@10", "sampled_hr@10"):
            assert 0.0 <= scores[metric]["mean"] <= 1.0, (name, metric)
        # Sampled candidates are far fewer than the full catalogue: an easier ranking.
        assert scores["sampled_hr@10"]["mean"] >= scores["hr@10"]["mean"]

    # The default fraction's point is evaluate's own; the other is a real curve point.
    assert "default fraction" in json.loads(curve.point_path(params, 0.5).read_text())["skipped"]
    point = json.loads(curve.point_path(params, 0.2).read_text())
    assert point["train_fraction"] == 0.2
    # It retrains params.yaml's curve.strategies (the trained baselines and the instance
    # transfer strategies are scored at the default fraction only).
    on_curve = ["scratch", "zero_shot", "frozen", "finetune", "l2sp"]
    assert curve.curve_strategies(params) == on_curve
    assert set(point["strategies"]) == {*on_curve, "popularity"}
    assert point["positives"]["target/train"] < metrics_positives(params)
    text = params.paths.report(report.MARKDOWN).read_text()
    assert "| sample_weighted | — | " in text and "## Quality bar" in text
    rows = params.paths.report(report.PLOT_DATA).read_text().splitlines()
    assert rows[0] == "train_fraction," + ",".join([*on_curve, "popularity"])
    assert [r.split(",")[0] for r in rows[1:]] == ["0.2", "0.5"]
    assert params.paths.report(report.PNG).read_bytes()[:4] == b"\x89PNG"


def metrics_positives(params) -> int:
    """Target train positives of the default split (preprocess meta)."""
    return json.loads((Path(params.paths.processed) / "meta.json").read_text())["positives"][
        "target/train"
    ]
