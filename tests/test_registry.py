import pytest

from mtrec.config import (
    GatesConfig,
    RegistryConfig,
    load_params,
    registered_model_name,
    registry_config,
)
from mtrec.io import read_json
from mtrec.registry import ChampionScore, Registry, artifact_location, decide
from mtrec.stages import register
from mtrec.stages.register import REPORT, _index_map

from .conftest import PROJECT_ROOT
from .registry_project import evaluated, preprocessed, registry_params, write_checkpoints

GATES = GatesConfig(min_ndcg=0.05, require_transfer_gain=True, champion_tolerance=0.005)


def _metrics(
    finetune: float,
    scratch: float,
    test_hash: str = "h1",
    popularity: float = 0.01,
    seeds: tuple[float, ...] | None = None,
) -> dict:
    """An evaluate report; ``seeds``: finetune's per-seed scores (default: each the mean)."""

    def strategy(mean: float, per_seed: tuple[float, ...] | None = None) -> dict:
        per_seed = per_seed or (mean, mean)
        return {
            "ndcg@10": {"mean": mean, "std": 0.0},
            "per_seed": [{"ndcg@10": v} for v in per_seed],
        }

    return {
        "k": 10,
        "seeds": [0, 1],
        "test_hash": test_hash,
        "strategies": {
            "finetune": strategy(finetune, seeds),
            "scratch": strategy(scratch),
            "popularity": {"ndcg@10": {"mean": popularity, "std": 0.0}},
        },
    }


def _gates(decision) -> dict[str, bool]:
    return {c.gate: c.passed for c in decision.checks}


def test_first_good_model_is_promoted() -> None:
    decision = decide(_metrics(0.09, 0.08), "finetune", 0, True, GATES, None, promote=True)
    assert decision.promote
    assert _gates(decision) == {
        "data": True,
        "quality": True,
        "popularity": True,
        "transfer": True,
        "champion": True,
    }


@pytest.mark.parametrize(
    ("metrics", "validation", "champion", "failed"),
    [
        (_metrics(0.04, 0.03), True, None, "quality"),
        (_metrics(0.08, 0.09), True, None, "transfer"),
        (_metrics(0.09, 0.08), False, None, "data"),
        (_metrics(0.09, 0.08), True, ChampionScore("3", 0.1, "h1"), "champion"),
        (_metrics(0.09, 0.08, popularity=0.09), True, None, "popularity"),
    ],
)
def test_each_gate_blocks_promotion(metrics, validation, champion, failed) -> None:
    decision = decide(metrics, "finetune", 0, validation, GATES, champion, promote=True)
    assert not decision.promote
    assert [g for g, ok in _gates(decision).items() if not ok] == [failed]


def test_champion_gate_allows_the_tolerance_and_names_the_numbers() -> None:
    champion = ChampionScore("3", 0.093, "h1")
    decision = decide(_metrics(0.089, 0.08), "finetune", 0, True, GATES, champion, promote=True)
    assert decision.promote
    assert "ndcg@10 0.0890 (finetune seed 0) vs champion v3 0.0930" in decision.checks[-1].detail


def test_a_champion_not_scored_on_this_test_set_blocks_promotion() -> None:
    """The register stage re-scores the champion on the run's test set; when it could not,
    the scores are not comparable and nothing moves (on 64f9657 the gate passed)."""
    champion = ChampionScore("3", 0.01, "other", note="its model files could not be read")
    decision = decide(_metrics(0.09, 0.08), "finetune", 0, True, GATES, champion, promote=True)
    assert not decision.promote
    assert [c.gate for c in decision.checks if not c.passed] == ["champion"]
    assert "could not be re-scored" in decision.checks[-1].detail
    assert "its model files could not be read" in decision.checks[-1].detail


def test_beating_popularity_by_the_margin_is_the_default_floor() -> None:
    """min_ndcg 0 could never fail; popularity on the same test set, plus a margin, can."""
    metrics = _metrics(0.09, 0.08, popularity=0.085)
    assert decide(metrics, "finetune", 0, True, GatesConfig(), None, promote=True).promote
    strict = GatesConfig(popularity_margin=0.01)
    decision = decide(metrics, "finetune", 0, True, strict, None, promote=True)
    assert [c.gate for c in decision.checks if not c.passed] == ["popularity"]
    assert "popularity 0.0850 + margin 0.01" in decision.checks[2].detail
    off = GatesConfig(popularity_margin=None)
    assert "popularity" not in _gates(decide(metrics, "finetune", 0, True, off, None, True))


def test_the_gates_judge_the_registered_seed_not_the_mean() -> None:
    """Seed 0's checkpoint is registered: its own score decides (mean 0.09, seed 0 0.04)."""
    metrics = _metrics(0.09, 0.08, seeds=(0.04, 0.14))
    decision = decide(metrics, "finetune", 0, True, GATES, None, promote=True)
    assert [c.gate for c in decision.checks if not c.passed] == ["quality"]
    assert "ndcg@10 0.0400 (finetune seed 0) < floor 0.05" in decision.checks[1].detail
    assert decide(metrics, "finetune", 1, True, GATES, None, promote=True).promote


def test_a_version_rolled_back_from_is_not_promoted() -> None:
    decision = decide(
        _metrics(0.09, 0.08), "finetune", 0, True, GATES, None, True, rolled_back="bad CTR"
    )
    assert not decision.promote
    assert "re-admits" in decision.checks[-1].detail


def test_passing_gates_without_promotion_keep_the_champion() -> None:
    decision = decide(_metrics(0.09, 0.08), "finetune", 0, True, GATES, None, promote=False)
    assert decision.passed and not decision.promote


def test_scratch_cannot_pass_the_transfer_gate() -> None:
    decision = decide(_metrics(0.09, 0.08), "scratch", 0, True, GATES, None, promote=True)
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


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({}, "mtrec"),
        ({"target": {"genres": ["Comedy"]}}, "mtrec-comedy"),
        ({"target": {"genres": ["Children", "Animation"]}}, "mtrec"),  # the same target
        ({"data": {"dataset": "mind"}, "target": {"genres": ["sports"]}}, "mtrec-mind-sports"),
        (
            {
                "data": {"dataset": "mind"},
                "target": {"genres": ["sports"]},
                "registry": {"model_name": "mtrec-mind"},
            },
            "mtrec-mind-sports",
        ),
    ],
)
def test_another_dataset_or_target_registers_under_its_own_name(overrides, name) -> None:
    params = load_params(PROJECT_ROOT / "params.yaml", overrides)
    assert registered_model_name(params) == name
    assert registry_config(params).model_name == name


@pytest.fixture(scope="module")
def last_week_and_now(tmp_path_factory, canonical):
    """One registry; the data as last week's champion saw it, and after new feedback (another
    split, so another test set). Gates reduced to the champion's, with no tolerance."""
    root = tmp_path_factory.mktemp("gates")
    gates = {
        "gates": {
            "require_transfer_gain": False,
            "popularity_margin": None,
            "champion_tolerance": 0.0,
        }
    }
    before = registry_params(
        root / "before",
        root,
        gates | {"registry": {"strategy": "scratch"}, "transfer": {"train": {"epochs": 3}}},
    )
    after = registry_params(root / "after", root, gates | {"preprocess": {"seed": 7}})
    return preprocessed(before, canonical), preprocessed(after, canonical)


def test_a_retrain_on_new_data_is_gated_against_the_champion_rescored(
    last_week_and_now, monkeypatch
) -> None:
    """The observed hole: feedback changed the test set, so the champion gate skipped the
    comparison and a worse model took @champion (on 64f9657: v2 promoted)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before, after = last_week_and_now
    write_checkpoints(before, trained="scratch")  # a trained champion
    own = evaluated(before)["strategies"]["scratch"]["ndcg@10"]["mean"]
    register.run(before)
    registry = Registry(registry_config(after))
    assert registry.champion_version() == "1"

    write_checkpoints(after)  # an untrained challenger, on another test set
    metrics = evaluated(after)
    assert metrics["test_hash"] != read_json(before.paths.report("metrics.json"))["test_hash"]
    register.run(after)

    assert registry.champion_version() == "1"
    assert str(registry.client.get_model_version_by_alias("mtrec", "challenger").version) == "2"
    checks = {c["gate"]: c for c in read_json(after.paths.report(REPORT))["decision"]["checks"]}
    assert not checks["champion"]["passed"]
    assert (
        f"re-scored on this test set (it scored {own:.4f} on its own)"
        in (checks["champion"]["detail"])
    )
    # The version records the score of the checkpoint registered, the one the gates judged.
    run = registry.client.get_run(registry.client.get_model_version("mtrec", "2").run_id)
    seed0 = metrics["strategies"]["finetune"]["per_seed"][0]["ndcg@10"]
    assert run.data.metrics["ndcg_at_10"] == pytest.approx(seed0)
    assert run.data.tags["mtrec.seed"] == "0"


def test_the_champion_is_rescored_through_its_own_ids() -> None:
    """This data's index of each id -> the champion's index of the same id; ids it never
    saw -> its out-of-vocabulary row 0."""
    theirs = {"a": 2, "b": 1}
    mapped = _index_map(["b", "new", "a"], [1, 2, 3], theirs)
    assert mapped.tolist() == [0, 1, 0, 2]
