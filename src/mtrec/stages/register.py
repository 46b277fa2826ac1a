"""Stage ``register``: log the run to MLflow, register the model, apply the gates.

One checkpoint is registered: the registered strategy's model of the first seed in
``eval.seeds``; the quality, popularity and champion gates judge that checkpoint's own score.
A champion scored on another test set (new feedback changes it) is re-scored on this one first.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mtrec.config import Params, registry_config
from mtrec.core.multitask import MultiTaskModel
from mtrec.data.splitting import TARGET
from mtrec.io import read_json, sha256_file, write_json
from mtrec.registry import FINGERPRINT_TAG, ChampionScore, Registry, decide, git_revision
from mtrec.stages import evaluate, validate
from mtrec.stages.modeling import ProcessedData, load_processed, transferred_path

log = logging.getLogger(__name__)

REPORT = "registration.json"


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def metric_key(name: str) -> str:
    """MLflow metric names cannot hold '@': ndcg@10 -> ndcg_at_10."""
    return name.replace("@", "_at_")


def registered_strategy(params: Params) -> str:
    """The configured strategy, or the one cross-validation selected (``cv_best``)."""
    if params.registry.strategy != "cv_best":
        return params.registry.strategy
    return read_json(params.paths.report(evaluate.METRICS_FILE))["cv"]["selected"]


def build_bundle(data: ProcessedData, domain: str, path: str | Path) -> Path:
    """Save what serving needs besides the weights (``mtrec.serving.load_bundle``): id maps,
    candidates, seen items, popularity; only plain values, loadable with ``weights_only``."""
    inter = data.interactions
    positives = inter[(inter["domain"] == domain) & (inter["click"] == 1)]
    candidates = data.items[data.items["domain"] == domain].sort_values("item_idx")
    popularity = positives["item_idx"].value_counts().reindex(candidates["item_idx"], fill_value=0)
    torch.save(
        {
            "users": dict(
                zip(data.users["user"].tolist(), data.users["user_idx"].tolist(), strict=True)
            ),
            "candidate_idx": candidates["item_idx"].to_numpy(np.int64).tolist(),
            "candidate_raw": candidates["item"].tolist(),
            "seen": positives.groupby("user_idx")["item_idx"].agg(list).to_dict(),
            "popularity": popularity.to_numpy(np.float64).tolist(),
        },
        path,
    )
    return Path(path)


class _Translated:
    """A model scored on data encoded differently: this data's user and item indices are
    translated to the model's own (ids it never saw map to its out-of-vocabulary row 0)."""

    def __init__(self, model: MultiTaskModel, users: torch.Tensor, items: torch.Tensor) -> None:
        self.model, self.users, self.items = model, users, items
        self.spec = model.spec

    def eval(self) -> _Translated:
        self.model.eval()
        return self

    def __call__(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(self.users[users], self.items[items])

    def score_matrix(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.model.score_matrix(self.users[users], self.items[items])


def _index_map(raw: list, idx: list[int], theirs: dict) -> torch.Tensor:
    """``out[i]``: the other encoding's index of the id this data encodes as ``i`` (0: unseen)."""
    out = torch.zeros(max(idx, default=0) + 1, dtype=torch.long)
    out[torch.tensor(idx, dtype=torch.long)] = torch.tensor(
        [theirs.get(r, 0) for r in raw], dtype=torch.long
    )
    return out


def rescore_champion(
    params: Params,
    data: ProcessedData,
    registry: Registry,
    champion: ChampionScore,
    test_hash: str,
) -> ChampionScore:
    """The champion's own checkpoint scored on this run's test set, its ids translated through
    its serving bundle; when its files cannot be read, the old score with a note saying why
    (the champion gate then refuses to compare). Weights are tensors: nothing is unpickled."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from mtrec.core.models import load_model
    from mtrec.serving import load_bundle

    uri = f"models:/{registry.cfg.model_name}/{champion.version}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
            files = Model.load(local).flavors["python_function"]["artifacts"]
            model = load_model(local / files["model"]["path"])
            bundle = load_bundle(local / files["bundle"]["path"])
    except (MlflowException, OSError, KeyError, RuntimeError, pickle.UnpicklingError) as exc:
        log.warning("champion v%s cannot be re-scored: %s", champion.version, exc)
        return replace(champion, note=f"its model files could not be read: {exc}")
    # The bundle knows the champion's target items only: the test set's are target items.
    translated = _Translated(
        model,
        _index_map(data.users["user"].tolist(), data.users["user_idx"].tolist(), bundle["users"]),
        _index_map(
            data.items["item"].tolist(),
            data.items["item_idx"].tolist(),
            dict(zip(bundle["candidate_raw"], bundle["candidate_idx"], strict=True)),
        ),
    )
    test = evaluate.build_test_set(params, data)
    value = evaluate.score_model(translated, test, params)[f"ndcg@{params.eval.k}"]
    note = f"re-scored on this test set (it scored {champion.value:.4f} on its own)"
    log.info("champion v%s %s: %.4f", champion.version, note, value)
    return ChampionScore(champion.version, value, test_hash, note)


def _log_run(
    params: Params,
    data: ProcessedData,
    strategy: str,
    seed: int,
    metrics: dict,
    decision: dict,
    checkpoint: Path,
) -> str:
    """One MLflow run: params, metrics, lineage, reports, decision, and the pyfunc model."""
    import mlflow

    from mtrec.serving import MODEL_CODE, SIGNATURE

    cfg = registry_config(params)
    with (
        mlflow.start_run(run_name=f"{strategy}-{params.data.dataset}"),
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.log_params(_flatten(params.to_dict()))
        for name, values in metrics["strategies"].items():
            mlflow.log_metrics(
                {
                    metric_key(f"{name}.{m}.{stat}"): v[stat]
                    for m, v in values.items()
                    if m != "per_seed"
                    for stat in v
                }
            )
        # The headline numbers are the registered checkpoint's own (what the gates judged).
        own = metrics["strategies"][strategy]["per_seed"][metrics["seeds"].index(seed)]
        mlflow.log_metrics({metric_key(m): v for m, v in own.items()})
        mlflow.set_tags(
            {
                "mtrec.git_revision": git_revision(),
                "mtrec.strategy": strategy,
                "mtrec.seed": str(seed),
                "mtrec.test_hash": metrics["test_hash"],
                "mtrec.dataset": params.data.dataset,
            }
        )
        for lineage in ("dvc.lock", "params.yaml"):
            if Path(lineage).exists():
                mlflow.log_artifact(lineage, "lineage")
        mlflow.log_artifacts(params.paths.reports, "reports")
        mlflow.log_dict(decision, "decision.json")
        bundle = build_bundle(data, TARGET, Path(tmp) / "bundle.pt")
        # A model from code: the version stores MODEL_CODE and tensors, no pickled class.
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={"model": str(checkpoint), "bundle": str(bundle)},
            signature=SIGNATURE,
            registered_model_name=cfg.model_name,
        )
    return str(info.registered_model_version)


def run(params: Params) -> None:
    """Register the configured strategy's first-seed model and move aliases per the gates."""
    metrics = read_json(params.paths.report(evaluate.METRICS_FILE))
    validation = read_json(params.paths.report(validate.REPORT))
    data = load_processed(params)  # read once: the bundle and a champion's re-scoring use it
    strategy = registered_strategy(params)
    seed = params.eval.seeds[0]
    checkpoint = transferred_path(params, strategy, seed)
    cfg = registry_config(params)
    registry = Registry(cfg)
    metric = metric_key(f"ndcg@{metrics['k']}")
    fingerprint = sha256_file(checkpoint)
    existing = registry.existing_version(fingerprint)
    champion = registry.champion(metric)
    if champion is not None and champion.test_hash != metrics["test_hash"]:
        champion = rescore_champion(params, data, registry, champion, metrics["test_hash"])
    decision = decide(
        metrics,
        strategy,
        seed,
        validation["success"],
        params.gates,
        champion,
        cfg.promote,
        registry.rolled_back(existing) if existing else None,
    )
    if existing:
        version = existing
        log.info(
            "model already registered as %s v%s; not registering again", cfg.model_name, version
        )
    else:
        version = _log_run(params, data, strategy, seed, metrics, decision.to_dict(), checkpoint)
        registry.client.set_model_version_tag(cfg.model_name, version, FINGERPRINT_TAG, fingerprint)
    aliases = registry.set_aliases(version, decision, champion and champion.version)
    for check in decision.checks:
        log.info(
            "gate %-10s %s: %s", check.gate, "passed" if check.passed else "FAILED", check.detail
        )
    log.info("%s v%s -> @%s", cfg.model_name, version, ", @".join(aliases))
    write_json(
        params.paths.report(REPORT),
        {
            "model_name": cfg.model_name,
            "version": version,
            "aliases": aliases,
            "decision": decision.to_dict(),
        },
    )
