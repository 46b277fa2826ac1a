"""MLflow tracking and model registry: runs, versions, aliases and the gates' decision.

A candidate version always gets ``@challenger``; ``@champion`` moves only when every gate
passes (and promotion is on). The decision, with the numbers behind it, is logged on the run
and as tags on the version, so "why was this (not) promoted?" is answered in the MLflow UI.
A rollback moves ``@champion`` back to the version it replaced and records who and why the
same way.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mtrec.config import GatesConfig, RegistryConfig
from mtrec.errors import RegistryError

log = logging.getLogger(__name__)

CHALLENGER, CHAMPION = "challenger", "champion"
FINGERPRINT_TAG = "mtrec.fingerprint"
PREVIOUS_CHAMPION_TAG = "mtrec.previous_champion"
ROLLED_BACK_TAG = "mtrec.rolled_back"  # on a version rolled back from: never auto-promoted
READMITTED_TAG = "mtrec.readmitted"
LOCK_SUFFIX = ".promotion-lock"  # a registered model that exists while @champion moves
_LOCK_POLL_S = 0.2  # a holder keeps the lock for a few registry calls: milliseconds
ROLLBACK_TAG = "mtrec.rollback"  # prefix: .from, .by, .reason, .at, .request


@dataclass(frozen=True)
class Check:
    """One gate's verdict and the numbers that decided it."""

    gate: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    """All gates, and whether ``@champion`` moves."""

    checks: list[Check]
    promote_requested: bool

    @property
    def passed(self) -> bool:
        """Every gate passed."""
        return all(c.passed for c in self.checks)

    @property
    def promote(self) -> bool:
        """Gates passed and promotion was asked for."""
        return self.passed and self.promote_requested

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "promote": self.promote,
            "passed": self.passed,
            "promote_requested": self.promote_requested,
            "checks": [asdict(c) for c in self.checks],
        }


@dataclass(frozen=True)
class ChampionScore:
    """The current champion's headline metric and the test set it was measured on; ``note``
    says how it was obtained (re-scored on another test set, or why it could not be)."""

    version: str
    value: float
    test_hash: str
    note: str = ""


def checkpoint_score(metrics: dict, strategy: str, seed: int) -> float:
    """NDCG@K of the one checkpoint registered (``strategy``, ``seed``), from the evaluate
    stage's per-seed scores: the number the quality and champion gates judge."""
    index = metrics["seeds"].index(seed)
    return metrics["strategies"][strategy]["per_seed"][index][f"ndcg@{metrics['k']}"]


def decide(
    metrics: dict,
    strategy: str,
    seed: int,
    validation_passed: bool,
    gates: GatesConfig,
    champion: ChampionScore | None,
    promote: bool,
    rolled_back: str | None = None,
) -> Decision:
    """Apply the data, quality, popularity, transfer, champion and rollback gates.

    The registered checkpoint (``strategy``, ``seed``) is judged on its own score against
    popularity and the champion, on the same test set; the transfer gate compares the
    strategy's mean over seeds with scratch's (a claim about the strategy, not one seed).
    ``rolled_back``: the note of a rollback away from this very version, which blocks it.
    """
    metric = f"ndcg@{metrics['k']}"
    value = checkpoint_score(metrics, strategy, seed)
    name = f"{metric} {value:.4f} ({strategy} seed {seed})"
    checks = [
        Check(
            "data",
            validation_passed,
            "validation passed" if validation_passed else "validation failed",
        ),
        Check(
            "quality",
            value >= gates.min_ndcg,
            f"{name} {'>=' if value >= gates.min_ndcg else '<'} floor {gates.min_ndcg}",
        ),
    ]
    if gates.popularity_margin is not None:
        popular = metrics["strategies"]["popularity"][metric]["mean"]
        beats = value > popular + gates.popularity_margin
        checks.append(
            Check(
                "popularity",
                beats,
                f"{name} {'>' if beats else '<='} popularity {popular:.4f} + margin "
                f"{gates.popularity_margin} on the same test set",
            )
        )
    if gates.require_transfer_gain:
        mean = metrics["strategies"][strategy][metric]["mean"]
        base = metrics["strategies"]["scratch"][metric]["mean"]
        checks.append(
            Check(
                "transfer",
                strategy != "scratch" and mean > base,
                f"{strategy} {metric} {mean:.4f} vs scratch {base:.4f} (means over seeds)",
            )
        )
    checks.append(_champion_check(value, name, metrics["test_hash"], gates, champion))
    if rolled_back is not None:
        checks.append(
            Check(
                "rollback",
                False,
                f"this version was rolled back from ({rolled_back}); it is not promoted again "
                "until an operator re-admits it (mtrec_rollback with action readmit)",
            )
        )
    return Decision(checks, promote)


def _champion_check(
    value: float, name: str, test_hash: str, gates: GatesConfig, champion: ChampionScore | None
) -> Check:
    """Not worse than ``@champion`` beyond the tolerance, both scored on this test set."""
    if champion is None:
        return Check("champion", True, "no current champion")
    if champion.test_hash != test_hash:
        # Scores on different test sets say nothing about each other: no comparison, no move.
        return Check(
            "champion",
            False,
            f"champion v{champion.version} was scored on another test set and could not be "
            f"re-scored on this one ({champion.note}); not compared, not promoted",
        )
    floor = champion.value - gates.champion_tolerance
    how = f", {champion.note}" if champion.note else ""
    return Check(
        "champion",
        value >= floor,
        f"{name} vs champion v{champion.version} {champion.value:.4f}{how} "
        f"(tolerance {gates.champion_tolerance})",
    )


def tracking_uri(cfg: RegistryConfig) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the project-local SQLite store from params."""
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri


def artifact_location(cfg: RegistryConfig, uri: str) -> str | None:
    """Where a new experiment keeps artifacts: a URI as given; a tracking server's own store
    (``--serve-artifacts``) for remote servers; else the local folder, made absolute."""
    if "://" in cfg.artifact_root:
        return cfg.artifact_root
    if uri.startswith(("http://", "https://")):
        return None
    return Path(cfg.artifact_root).resolve().as_uri()


def git_revision(repo: Path | None = None) -> str:
    """The code's git commit: HEAD of ``repo`` (default: the working directory), else what the
    run workspace recorded in ``MTREC_GIT_REVISION``, else "unknown"."""
    where = ["-C", str(repo)] if repo is not None else []
    try:
        return subprocess.run(
            ["git", *where, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("MTREC_GIT_REVISION", "unknown")


def log_validation(cfg: RegistryConfig, report: dict[str, Any], docs_dir: str | Path) -> None:
    """One MLflow run per data-gate verdict, passed or failed: counts, report, Data Docs."""
    import mlflow

    Registry(cfg)  # tracking URI and experiment
    with mlflow.start_run(run_name="validate"):
        mlflow.set_tags(
            {
                "mtrec.stage": "validate",
                "mtrec.data_gate": "passed" if report["success"] else "failed",
            }
        )
        mlflow.log_metrics(
            {
                "validation.expectations": report["expectations"],
                "validation.failures": len(report["failures"]),
            }
        )
        mlflow.log_dict(report, "validation.json")
        mlflow.log_artifacts(str(docs_dir), "data_docs")


class Registry:
    """Thin wrapper over one MLflow tracking server / registry for one experiment."""

    def __init__(self, cfg: RegistryConfig) -> None:
        import mlflow

        self.cfg = cfg
        mlflow.set_tracking_uri(tracking_uri(cfg))
        self.client = mlflow.MlflowClient()
        experiment = self.client.get_experiment_by_name(cfg.experiment)
        if experiment is None:
            experiment_id = self.client.create_experiment(
                cfg.experiment, artifact_location=artifact_location(cfg, tracking_uri(cfg))
            )
        else:
            experiment_id = experiment.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)

    def _champion(self) -> Any | None:
        """The model version behind ``@champion`` (an MLflow ModelVersion), if any."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.cfg.model_name, CHAMPION)
        except MlflowException:
            return None

    def champion(self, metric: str) -> ChampionScore | None:
        """The current ``@champion`` and its logged metric, if there is one."""
        version = self._champion()
        if version is None:
            return None
        run = self.client.get_run(version.run_id)
        return ChampionScore(
            str(version.version),
            run.data.metrics[metric],
            run.data.tags.get("mtrec.test_hash", ""),
        )

    def existing_version(self, fingerprint: str) -> str | None:
        """A version already registered for exactly this model (clear-and-rerun safety)."""
        from mlflow.exceptions import MlflowException

        try:
            versions = self.client.search_model_versions(f"name = '{self.cfg.model_name}'")
        except MlflowException:
            return None
        for version in versions:
            if version.tags.get(FINGERPRINT_TAG) == fingerprint:
                return str(version.version)
        return None

    def rolled_back(self, version: str) -> str | None:
        """The rollback note on a version rolled back from (it must not come back by itself)."""
        tags = self.client.get_model_version(self.cfg.model_name, version).tags
        return tags.get(ROLLED_BACK_TAG)

    def set_aliases(
        self, version: str, decision: Decision, gated_champion: str | None
    ) -> list[str]:
        """``@challenger`` always; ``@champion`` only on a passing, promotable decision, and
        only while it is still ``gated_champion`` (the version the gates compared with, None:
        there was none): a compare-and-set under the registry's promotion lock, so of two runs
        gated against the same champion one promotes and the other fails, to be re-gated."""
        name = self.cfg.model_name
        self.client.set_registered_model_alias(name, CHALLENGER, version)
        aliases = [CHALLENGER]
        for check in decision.checks:
            self.client.set_model_version_tag(
                name,
                version,
                f"gate.{check.gate}",
                f"{'passed' if check.passed else 'failed'}: {check.detail}",
            )
        if decision.promote:
            with self._promotion_lock():
                previous = self.champion_version()
                if previous != gated_champion:
                    raise RegistryError(
                        f"{name}@champion moved from "
                        f"{'nothing' if gated_champion is None else 'v' + gated_champion} to "
                        f"v{previous} after this run's gates read it: v{version} was not "
                        "promoted; run register again to gate it against the new champion"
                    )
                if previous and previous != version:
                    self.client.set_model_version_tag(
                        name, version, PREVIOUS_CHAMPION_TAG, previous
                    )
                self.client.set_registered_model_alias(name, CHAMPION, version)
            aliases.append(CHAMPION)
        return aliases

    @contextmanager
    def _promotion_lock(self) -> Iterator[None]:
        """Held while ``@champion`` is compared and moved. The registry has no compare-and-set
        on aliases, but creating a registered model is atomic (names are unique in its DB), so
        a model named ``<name>.promotion-lock`` is the lock; one older than
        ``registry.promotion_lock_timeout`` is a crashed holder's and is broken."""
        from mlflow.exceptions import MlflowException

        lock = f"{self.cfg.model_name}{LOCK_SUFFIX}"
        deadline = time.monotonic() + self.cfg.promotion_lock_timeout
        while True:
            try:
                self.client.create_registered_model(
                    lock, description="held while @champion moves; delete if stale"
                )
                break
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    # The SQL store reads the holder's lock back after a lost insert; the
                    # holder released it in between, so the lock is free: try again.
                    continue
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            try:
                held = self.client.get_registered_model(lock)
            except MlflowException:
                continue  # released meanwhile
            age = time.time() - held.creation_timestamp / 1000
            if age > self.cfg.promotion_lock_timeout:
                log.warning("breaking %s, held for %.0f s (a crashed promotion)", lock, age)
                self._release(lock)
            elif time.monotonic() > deadline:
                raise RegistryError(f"{lock} is held by another promotion; try again")
            else:
                time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            self._release(lock)

    def _release(self, lock: str) -> None:
        from mlflow.exceptions import MlflowException

        with suppress(MlflowException):  # already released (or broken as stale)
            self.client.delete_registered_model(lock)

    def champion_version(self) -> str | None:
        """Version number behind ``@champion``, if any."""
        version = self._champion()
        return None if version is None else str(version.version)

    def alias_version(self, alias: str) -> str:
        """Version number behind ``@alias``; a clear error when the alias is not set."""
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version_by_alias(self.cfg.model_name, alias)
        except MlflowException as exc:
            raise RegistryError(
                f"{self.cfg.model_name}@{alias} does not exist in the registry at "
                f"{tracking_uri(self.cfg)}: no version has been given that alias yet"
            ) from exc
        return str(version.version)


@dataclass(frozen=True)
class Rollback:
    """One move of ``@champion`` back to an earlier version, and who asked for it and why."""

    model_name: str
    from_version: str
    to_version: str
    user: str
    reason: str
    at: str
    request: str


def rollback_champion(
    cfg: RegistryConfig,
    *,
    reason: str,
    user: str,
    request: str,
    to_version: str | None = None,
) -> Rollback:
    """Move ``@champion`` to ``to_version`` (default: the champion it replaced) and record who,
    why and when as tags on both versions and in their descriptions.

    ``request`` identifies the request (the Airflow run id): running the same request again
    after it succeeded changes nothing, so a cleared and rerun task never rolls back twice.
    """
    if not reason.strip():
        raise RegistryError("a rollback needs a reason")
    registry = Registry(cfg)
    client, name = registry.client, cfg.model_name
    current = registry._champion()
    if current is None:
        raise RegistryError(f"{name} has no @champion to roll back")
    tags = current.tags
    if tags.get(f"{ROLLBACK_TAG}.request") == request:
        log.info("rollback %s already applied: %s@champion is v%s", request, name, current.version)
        return Rollback(
            name,
            tags[f"{ROLLBACK_TAG}.from"],
            str(current.version),
            tags[f"{ROLLBACK_TAG}.by"],
            tags[f"{ROLLBACK_TAG}.reason"],
            tags[f"{ROLLBACK_TAG}.at"],
            request,
        )
    from_version = str(current.version)
    target = to_version or tags.get(PREVIOUS_CHAMPION_TAG)
    if target is None:
        raise RegistryError(
            f"{name} v{from_version} has no recorded previous champion; name the version to "
            "roll back to"
        )
    target = str(target)
    if target == from_version:
        raise RegistryError(f"{name} v{target} is already @champion")
    from mlflow.exceptions import MlflowException

    try:
        replacement = client.get_model_version(name, target)
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {target}") from exc

    rollback = Rollback(
        name,
        from_version,
        target,
        user,
        reason,
        datetime.now(UTC).isoformat(timespec="seconds"),
        request,
    )
    note = f"{rollback.at} {user}: @champion v{from_version} -> v{target}: {reason}"
    for version, description in (
        (target, replacement.description),
        (from_version, current.description),
    ):
        client.update_model_version(
            name, version, description="\n".join(filter(None, [description, note]))
        )
    client.set_model_version_tag(name, from_version, ROLLED_BACK_TAG, note)
    record = {"from": from_version, "by": user, "reason": reason, "at": rollback.at}
    for key, value in (record | {"request": request}).items():
        client.set_model_version_tag(name, target, f"{ROLLBACK_TAG}.{key}", value)
    # The alias moves last: a crash before this line leaves @champion where it was.
    client.set_registered_model_alias(name, CHAMPION, target)
    log.info("%s@champion: v%s -> v%s (%s: %s)", name, from_version, target, user, reason)
    return rollback


def readmit_version(cfg: RegistryConfig, version: str, *, reason: str, user: str) -> str:
    """Let a version rolled back from be promoted automatically again: its rollback mark is
    removed, and who and why is recorded (tag ``mtrec.readmitted``, description). Safe to
    rerun: a version already re-admitted is left as it is. Returns the note."""
    if not reason.strip():
        raise RegistryError("re-admitting a version needs a reason")
    from mlflow.exceptions import MlflowException

    client, name = Registry(cfg).client, cfg.model_name
    try:
        current = client.get_model_version(name, version)
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    mark = current.tags.get(ROLLED_BACK_TAG)
    if mark is None:
        if READMITTED_TAG in current.tags:
            return current.tags[READMITTED_TAG]
        raise RegistryError(f"{name} v{version} was never rolled back from: nothing to re-admit")
    at = datetime.now(UTC).isoformat(timespec="seconds")
    note = f"{at} {user}: re-admitted for automatic promotion: {reason} (was: {mark})"
    client.update_model_version(
        name, version, description="\n".join(filter(None, [current.description, note]))
    )
    client.set_model_version_tag(name, version, READMITTED_TAG, note)
    client.delete_model_version_tag(name, version, ROLLED_BACK_TAG)
    log.info("%s v%s re-admitted by %s: %s", name, version, user, reason)
    return note
