"""Stage ``register``: log the run to MLflow, register the model, apply the gates."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from mtrec.config import Params
from mtrec.data.splitting import TARGET
from mtrec.io import read_json, sha256_file, write_json
from mtrec.registry import FINGERPRINT_TAG, Registry, decide, git_revision
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


def _log_run(params: Params, strategy: str, metrics: dict, decision: dict, checkpoint: Path) -> str:
    """One MLflow run: params, metrics, lineage, reports, decision, and the pyfunc model."""
    import mlflow

    from mtrec.serving import MODEL_CODE, SIGNATURE

    cfg = params.registry
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
        headline = metrics["strategies"][strategy]
        mlflow.log_metrics(
            {metric_key(m): v["mean"] for m, v in headline.items() if m != "per_seed"}
        )
        mlflow.set_tags(
            {
                "mtrec.git_revision": git_revision(),
                "mtrec.strategy": strategy,
                "mtrec.test_hash": metrics["test_hash"],
                "mtrec.dataset": params.data.dataset,
            }
        )
        for lineage in ("dvc.lock", "params.yaml"):
            if Path(lineage).exists():
                mlflow.log_artifact(lineage, "lineage")
        mlflow.log_artifacts(params.paths.reports, "reports")
        mlflow.log_dict(decision, "decision.json")
        bundle = build_bundle(load_processed(params), TARGET, Path(tmp) / "bundle.pt")
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
    strategy = registered_strategy(params)
    checkpoint = transferred_path(params, strategy, params.eval.seeds[0])
    registry = Registry(params.registry)
    metric = metric_key(f"ndcg@{metrics['k']}")
    fingerprint = sha256_file(checkpoint)
    existing = registry.existing_version(fingerprint)
    champion = registry.champion(metric)
    decision = decide(
        metrics,
        strategy,
        validation["success"],
        params.gates,
        champion,
        params.registry.promote,
    )
    if existing:
        version = existing
        log.info(
            "model already registered as %s v%s; not registering again",
            params.registry.model_name,
            version,
        )
    else:
        version = _log_run(params, strategy, metrics, decision.to_dict(), checkpoint)
        registry.client.set_model_version_tag(
            params.registry.model_name, version, FINGERPRINT_TAG, fingerprint
        )
    aliases = registry.set_aliases(version, decision)
    for check in decision.checks:
        log.info(
            "gate %-9s %s: %s", check.gate, "passed" if check.passed else "FAILED", check.detail
        )
    log.info("%s v%s -> @%s", params.registry.model_name, version, ", @".join(aliases))
    write_json(
        params.paths.report(REPORT),
        {
            "model_name": params.registry.model_name,
            "version": version,
            "aliases": aliases,
            "decision": decision.to_dict(),
        },
    )
