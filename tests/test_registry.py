import pytest

from mtrec.config import GatesConfig, RegistryConfig
from mtrec.registry import ChampionScore, artifact_location, decide

GATES = GatesConfig(min_ndcg=0.05, require_transfer_gain=True, champion_tolerance=0.005)


def _metrics(finetune: float, scratch: float, test_hash: str = "h1") -> dict:
    return {
        "k": 10,
        "test_hash": test_hash,
        "strategies": {
            "finetune": {"ndcg@10": {"mean": finetune, "std": 0.0}},
            "scratch": {"ndcg@10": {"mean": scratch, "std": 0.0}},
        },
    }


def _gates(decision) -> dict[str, bool]:
    return {c.gate: c.passed for c in decision.checks}


def test_first_good_model_is_promoted() -> None:
    decision = decide(_metrics(0.09, 0.08), "finetune", True, GATES, None, promote=True)
    assert decision.promote
    assert _gates(decision) == {"data": True, "quality": True, "transfer": True, "champion": True}


@pytest.mark.parametrize(
    ("metrics", "validation", "champion", "failed"),
    [
        (_metrics(0.04, 0.03), True, None, "quality"),
        (_metrics(0.08, 0.09), True, None, "transfer"),
        (_metrics(0.09, 0.08), False, None, "data"),
        (_metrics(0.09, 0.08), True, ChampionScore("3", 0.1, "h1"), "champion"),
    ],
)
def test_each_gate_blocks_promotion(metrics, validation, champion, failed) -> None:
    decision = decide(metrics, "finetune", validation, GATES, champion, promote=True)
    assert not decision.promote
    assert [g for g, ok in _gates(decision).items() if not ok] == [failed]


def test_champion_gate_allows_the_tolerance_and_names_the_numbers() -> None:
    champion = ChampionScore("3", 0.093, "h1")
    decision = decide(_metrics(0.089, 0.08), "finetune", True, GATES, champion, promote=True)
    assert decision.promote
    assert "0.0890 vs champion v3 0.0930" in decision.checks[-1].detail


def test_champion_on_another_test_set_is_not_compared() -> None:
    champion = ChampionScore("3", 0.5, "other")
    decision = decide(_metrics(0.09, 0.08), "finetune", True, GATES, champion, promote=True)
    assert decision.promote
    assert "different test set" in decision.checks[-1].detail


def test_passing_gates_without_promotion_keep_the_champion() -> None:
    decision = decide(_metrics(0.09, 0.08), "finetune", True, GATES, None, promote=False)
    assert decision.passed and not decision.promote


def test_scratch_cannot_pass_the_transfer_gate() -> None:
    decision = decide(_metrics(0.09, 0.08), "scratch", True, GATES, None, promote=True)
    assert _gates(decision)["transfer"] is False


@pytest.mark.parametrize(
    ("root", "uri", "expected"),
    [
        ("s3://mlflow", "http://mlflow:5000", "s3://mlflow"),
        ("mlartifacts", "http://mlflow:5000", None),
        ("/abs/mlartifacts", "sqlite:///mlflow.db", "file:///abs/mlartifacts"),
    ],
)
def test_artifact_location_follows_the_store(root, uri, expected) -> None:
    assert artifact_location(RegistryConfig(artifact_root=root), uri) == expected
