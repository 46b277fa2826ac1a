"""Rolling ``@champion`` back, on a real (SQLite) MLflow registry."""

import threading

import mlflow
import pytest

from mtrec.config import RegistryConfig, registry_config
from mtrec.errors import RegistryError
from mtrec.io import read_json
from mtrec.registry import (
    LOCK_SUFFIX,
    Check,
    Decision,
    Registry,
    readmit_version,
    rollback_champion,
)
from mtrec.stages import register

from .registry_project import evaluated, preprocessed, registry_params, write_checkpoints

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
        registry.set_aliases(str(version.version), PROMOTE, registry.champion_version())
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


def test_two_concurrent_promotions_one_wins_the_other_fails_clearly(cfg) -> None:
    """Both runs were gated against v1; only one may move @champion (on 64f9657 the last
    writer won, unseen)."""
    registry = _promote_versions(cfg, 1)
    for _ in range(2):
        with mlflow.start_run() as run:
            mlflow.log_text("weights", "model/weights.txt")
        registry.client.create_model_version(
            cfg.model_name, f"{run.info.artifact_uri}/model", run.info.run_id
        )
    start = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def promote(version: str) -> None:
        mine = Registry(cfg)
        start.wait()
        try:
            outcome[version] = mine.set_aliases(version, PROMOTE, gated_champion="1")
        except RegistryError as exc:
            outcome[version] = exc

    threads = [threading.Thread(target=promote, args=(v,)) for v in ("2", "3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winner = registry.champion_version()
    loser = {"2": "3", "3": "2"}[winner]
    assert outcome[winner] == ["challenger", "champion"]
    assert isinstance(outcome[loser], RegistryError)
    assert f"moved from v1 to v{winner}" in str(outcome[loser])
    assert f"v{loser} was not promoted" in str(outcome[loser])
    tags = registry.client.get_model_version(cfg.model_name, winner).tags
    assert tags["mtrec.previous_champion"] == "1"
    assert not registry.client.search_registered_models(f"name = '{cfg.model_name}{LOCK_SUFFIX}'")


def test_a_lock_released_while_a_losing_promotion_reads_it_is_taken(cfg, monkeypatch) -> None:
    """MLflow's SQL store answers a lost create race by reading the holder's lock back; if the
    holder released it in between, that read raises RESOURCE_DOES_NOT_EXIST from inside
    ``create_registered_model``. The loser must take the free lock, not die (seen in CI)."""
    registry = _promote_versions(cfg, 1)
    lock = f"{cfg.model_name}{LOCK_SUFFIX}"
    registry.client.create_registered_model(lock)  # another promotion holds it
    store = registry.client._get_registry_client().store
    read_lock = store.get_registered_model

    def holder_releases_before_the_read(name: str):
        monkeypatch.setattr(store, "get_registered_model", read_lock)
        registry.client.delete_registered_model(lock)
        return read_lock(name)

    monkeypatch.setattr(store, "get_registered_model", holder_releases_before_the_read)
    with registry._promotion_lock():
        assert registry.client.get_registered_model(lock)
    assert not registry.client.search_registered_models(f"name = '{lock}'")


def test_a_stale_promotion_lock_is_broken(cfg) -> None:
    """A promotion that crashed while holding the lock does not block promotion for ever."""
    registry = _promote_versions(cfg, 1)
    registry.client.create_registered_model(f"{cfg.model_name}{LOCK_SUFFIX}")
    # Any lock taken before this point is older than a millisecond: a crashed holder's.
    impatient = Registry(cfg.model_copy(update={"promotion_lock_timeout": 0.001}))
    with impatient._promotion_lock():
        assert registry.client.get_registered_model(f"{cfg.model_name}{LOCK_SUFFIX}")
    assert not registry.client.search_registered_models(f"name = '{cfg.model_name}{LOCK_SUFFIX}'")


def test_a_rollback_sticks_until_an_operator_readmits_the_version(
    tmp_path, canonical, monkeypatch
) -> None:
    """Rollback, then a rerun on unchanged data: the run-cache brings back the same
    checkpoint, register finds its version by fingerprint and (on 64f9657) promoted it again."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    relaxed = {"require_transfer_gain": False, "popularity_margin": None, "champion_tolerance": 1}
    params = registry_params(
        tmp_path, tmp_path, {"registry": {"strategy": "scratch"}, "gates": relaxed}
    )
    preprocessed(params, canonical)
    for init_seed in (0, 1):  # v1, then v2 promoted over it
        write_checkpoints(params, init_seed=init_seed)
        evaluated(params)
        register.run(params)
    cfg = registry_config(params)
    registry = Registry(cfg)
    assert registry.champion_version() == "2"
    rollback_champion(cfg, reason="CTR fell after v2", user="alice", request="run-1")

    register.run(params)  # the rerun: same data, same checkpoint

    assert registry.champion_version() == "1"
    report = read_json(params.paths.report(register.REPORT))
    assert report["version"] == "2" and report["aliases"] == ["challenger"]
    (blocked,) = [c for c in report["decision"]["checks"] if not c["passed"]]
    assert blocked["gate"] == "rollback" and "alice" in blocked["detail"]

    with pytest.raises(RegistryError, match="never rolled back from"):
        readmit_version(cfg, "1", reason="nothing to clear", user="bob")
    readmit_version(cfg, "2", reason="the CTR drop was a logging bug", user="bob")
    register.run(params)

    assert registry.champion_version() == "2"
    tags = registry.client.get_model_version(cfg.model_name, "2").tags
    assert "mtrec.rolled_back" not in tags
    assert "bob" in tags["mtrec.readmitted"] and "logging bug" in tags["mtrec.readmitted"]
