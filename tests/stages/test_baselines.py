"""The trained baselines (BPR-MF, LightGCN) learn more than popularity on a real subset: the
first users of RecBole's ml-latest-small split (protocol ``predefined``)."""

import json

import pandas as pd
import pytest
import torch

from mtrec.config import JointGraphConfig, load_params
from mtrec.errors import ConfigError
from mtrec.io import write_json
from mtrec.stages import baselines, evaluate, preprocess
from mtrec.stages.evaluate import COLD
from mtrec.stages.modeling import load_processed
from mtrec.stages.validate import REPORT

from ..conftest import PROJECT_ROOT

SPLIT = PROJECT_ROOT / "data" / "ml-latest-small" / "recbole-split-seed2026"
USERS = 200


@pytest.fixture(scope="module")
def params(tmp_path_factory, canonical):
    root = tmp_path_factory.mktemp("baselines")
    split = root / "split"
    split.mkdir()
    for name in ("train", "valid", "test"):
        rows = pd.read_csv(SPLIT / f"{name}.tsv", sep="\t")
        rows[rows["user"] <= USERS].to_csv(split / f"{name}.tsv", sep="\t", index=False)
    paths = {n: str(root / n) for n in ("interim", "processed", "reports", "accepted", "baselines")}
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            "protocol": {"name": "predefined", "split_dir": str(split)},
            "transfer": {"strategies": ["scratch"]},
            "registry": {"strategy": "scratch"},
            "gates": {"require_transfer_gain": False},
            "eval": {"seeds": [0]},
        },
    )
    canonical.save(paths["interim"])
    write_json(params.paths.report(REPORT), {"success": True})
    preprocess.run(params)
    return params


def test_baselines_beat_popularity(params) -> None:
    baselines.run(params)
    record = json.loads(params.paths.report(baselines.REPORT).read_text())
    assert set(record) == set(params.baselines.models)
    data = load_processed(params)
    test = evaluate.build_test_set(params, data)
    popular = evaluate.score_popularity(data, test, params)["ndcg@10"]["mean"]
    for name, models in baselines.load_baselines(params).items():
        assert record[name]["seed0"]["best_epoch"] >= 1
        scores = evaluate.score_baseline(models, test, params)
        assert scores["ndcg@10"]["mean"] > popular, (name, scores["ndcg@10"], popular)


def test_a_joint_baseline_needs_a_source_domain(params) -> None:
    joint = params.model_copy(
        update={"baselines": params.baselines.model_copy(update={"models": ["lightgcn_joint"]})}
    )
    with pytest.raises(ConfigError, match="lightgcn_joint trains on the source domain's clicks"):
        baselines.run(joint)


def test_the_joint_lightgcn_reaches_users_the_target_has_no_click_of(tmp_path, canonical) -> None:
    """Cold users (no target training click) are isolated in the target's graph: LightGCN on
    the target alone ranks for them from untrained vectors, the joint one from what their
    source clicks taught the shared user embeddings."""
    paths = {
        n: str(tmp_path / n) for n in ("interim", "processed", "reports", "accepted", "baselines")
    }
    quick = {"epochs": 5, "warmup_epochs": 0}
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": paths,
            "eval": {"seeds": [0]},
            "baselines": {"models": ["lightgcn", "lightgcn_joint"], "lightgcn": quick},
        },
    )
    canonical.save(paths["interim"])
    write_json(params.paths.report(REPORT), {"success": True})
    preprocess.run(params)
    baselines.run(params)
    record = json.loads(params.paths.report(baselines.REPORT).read_text())
    assert set(record) == {"lightgcn", "lightgcn_joint"}
    data = load_processed(params)
    test = evaluate.build_test_set(params, data)
    models = baselines.load_baselines(params)
    cold = {
        name: evaluate.score_baseline(group, test, params)[f"{COLD}_ndcg@10"]["mean"]
        for name, group in models.items()
    }
    assert cold["lightgcn_joint"] > 2 * cold["lightgcn"]

    # baselines.lightgcn_joint.source_weight reaches the trainer: one epoch at another weight
    # trains other tables, one at the same weight the same ones
    def one_epoch(weight: float) -> torch.Tensor:
        overrides = {"epochs": 1, "warmup_epochs": 0}
        tuned = params.model_copy(
            update={
                "baselines": params.baselines.model_copy(
                    update={
                        "lightgcn": params.baselines.lightgcn.model_copy(update=overrides),
                        "lightgcn_joint": JointGraphConfig(source_weight=weight),
                    }
                )
            }
        )
        model, _ = baselines.train_baseline(tuned, data, "lightgcn_joint", 0)
        return model.user.weight

    assert torch.equal(one_epoch(1.0), one_epoch(1.0))
    assert not torch.allclose(one_epoch(1.0), one_epoch(0.1))
