"""The trained baselines (BPR-MF, LightGCN) learn more than popularity on a real subset: the
first users of RecBole's ml-latest-small split (protocol ``predefined``)."""

import json

import pandas as pd
import pytest

from mtrec.config import load_params
from mtrec.io import write_json
from mtrec.stages import baselines, evaluate, preprocess
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
    assert set(record) == set(baselines.NAMES)
    data = load_processed(params)
    test = evaluate.build_test_set(params, data)
    popular = evaluate.score_popularity(data, test, params)["ndcg@10"]["mean"]
    for name, models in baselines.load_baselines(params).items():
        assert record[name]["seed0"]["best_epoch"] >= 1
        scores = evaluate.score_baseline(models, test, params)
        assert scores["ndcg@10"]["mean"] > popular, (name, scores["ndcg@10"], popular)
