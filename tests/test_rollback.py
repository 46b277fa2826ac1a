"""Rolling ``@champion`` back, on a real (SQLite) MLflow registry."""

import mlflow
import pytest

from mtrec.config import RegistryConfig
from mtrec.errors import RegistryError
from mtrec.registry import Check, Decision, Registry, rollback_champion

PROMOTE = Decision([Check("data", True, "validation passed")], promote_requested=True)


@pytest.fixture
def cfg(tmp_path, monkeypatch) -> RegistryConfig:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return RegistryConfig(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root=str(tmp_path / "artifacts"),
    )


def _promote_versions(cfg: RegistryConfig, n: int) -> Registry:
    """Register ``n`` versions and promote each in turn, as the register stage does."""
    registry = Registry(cfg)
    registry.client.create_registered_model(cfg.model_name)
    for _ in range(n):
        with mlflow.start_run() as run:
            mlflow.log_text("weights", "model/weights.txt")
        version = registry.client.create_model_version(
            cfg.model_name, f"{run.info.artifact_uri}/model", run.info.run_id
        )
        registry.set_aliases(str(version.version), PROMOTE)
    return registry


def test_rollback_moves_champion_to_the_one_it_replaced_and_records_who_and_why(cfg) -> None:
    registry = _promote_versions(cfg, 3)
    assert registry.champion_version() == "3"

    done = rollback_champion(cfg, reason="bad CTR in A/B", user="alice", request="run-1")

    assert (done.from_version, done.to_version, done.user) == ("3", "2", "alice")
    assert registry.champion_version() == "2"
    client, name = registry.client, cfg.model_name
    restored = client.get_model_version(name, "2")
    assert restored.tags["mtrec.rollback.by"] == "alice"
    assert restored.tags["mtrec.rollback.reason"] == "bad CTR in A/B"
    assert restored.tags["mtrec.rollback.from"] == "3"
    assert "alice: @champion v3 -> v2: bad CTR in A/B" in restored.description
    replaced = client.get_model_version(name, "3")
    assert "alice" in replaced.tags["mtrec.rolled_back"]
    assert "bad CTR in A/B" in replaced.description
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "3"

    # The same request again (a cleared and rerun task) does not roll back a second time.
    again = rollback_champion(cfg, reason="bad CTR in A/B", user="alice", request="run-1")
    assert again == done
    assert registry.champion_version() == "2"

    # A new request walks further back along the promotion history.
    rollback_champion(cfg, reason="still bad", user="bob", request="run-2")
    assert registry.champion_version() == "1"


def test_rollback_to_a_named_version(cfg) -> None:
    registry = _promote_versions(cfg, 3)
    rollback_champion(cfg, reason="known good", user="carol", request="r", to_version="1")
    assert registry.champion_version() == "1"


@pytest.mark.parametrize(
    ("versions", "kwargs", "message"),
    [
        (0, {}, "has no @champion"),
        (1, {}, "no recorded previous champion"),
        (2, {"to_version": "2"}, "already @champion"),
        (2, {"to_version": "9"}, "no version 9"),
        (2, {"reason": "  "}, "needs a reason"),
    ],
)
def test_impossible_rollbacks_are_named_and_change_nothing(cfg, versions, kwargs, message):
    registry = _promote_versions(cfg, versions)
    before = registry.champion_version()
    with pytest.raises(RegistryError, match=message):
        rollback_champion(cfg, **({"reason": "r", "user": "u", "request": "q"} | kwargs))
    assert registry.champion_version() == before
