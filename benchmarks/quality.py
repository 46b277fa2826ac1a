"""Ranking quality of mtrec beside RecBole 1.2.1 on identical rows, splits and candidates
(`make bench-quality`; protocols and mtrec's settings in ``quality.yaml``).

Per protocol, mtrec's own stages build the data in a scratch workspace (ingest, validate,
preprocess on the bundled files), the target's train / valid / test positives and the fixed
candidates are exported as TSV, and both sides train on exactly those: RecBole in its own venv
(``peer_recbole.py``, one process per run), mtrec in this process. Every finished
(side, protocol, model, seed) result is cached as JSON under ``.quality-cache/``; a rerun only
computes what is missing (``--force`` recomputes, ``--cached-only`` reports what is there).
Writes ``quality.json`` and ``quality.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import yaml

from mtrec.config import Params, deep_merge, load_params, read_preset
from mtrec.core.transfer import get_strategy
from mtrec.data.splitting import TARGET, TEST, TRAIN, VALID
from mtrec.stages import baselines, evaluate, ingest, preprocess, pretrain, validate
from mtrec.stages.modeling import load_processed
from mtrec.stages.transfer import target_rows, train_strategy

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
CACHE = HERE / ".quality-cache"
PEER_MODELS = {"popularity": "Pop", "bpr": "BPR", "lightgcn": "LightGCN"}
K = 10


def protocol_params(name: str, spec: dict, seeds: list[int], overlay: dict | None = None) -> Params:
    """params.yaml + the protocol's preset and params + ``overlay``, every path in the cache."""
    root = CACHE / name / "workspace"
    raw = read_preset(PROJECT, spec["preset"]) if spec.get("preset") else {}
    raw = deep_merge(raw, spec.get("params", {}))
    strategies = sorted(
        {"scratch"} | {e["strategy"] for e in spec["mtrec"].values() if "strategy" in e}
    )
    paths = {
        key: str(root / key)
        for key in ("staged", "interim", "processed", "embeddings", "pretrained", "transferred")
    }
    paths |= {"baselines": str(root / "baselines"), "reports": str(root / "reports")}
    paths["accepted"] = str(root / "accepted")
    fixed = {
        "paths": paths,
        "validate": {"gx_root": str(root)},
        "eval": {"seeds": seeds},
        # Its own MLflow store: two protocols run side by side (the project's mlflow.db,
        # created by both at once, failed one of them: "duplicate column name: step").
        "registry": {"strategy": "scratch", "tracking_uri": f"sqlite:///{root / 'mlflow.db'}"},
    }
    if raw.get("protocol", {}).get("name") != "predefined":
        fixed["transfer"] = {"strategies": strategies}
    raw = deep_merge(deep_merge(raw, fixed), overlay or {})
    return load_params(PROJECT / "params.yaml", raw)


def prepare(name: str, params: Params) -> Path:
    """Run ingest / validate / preprocess once; export the target's positives (and fixed
    candidates) as the TSV files both sides read."""
    export = CACHE / name / "export"
    if (export / "test.tsv").exists():
        return export
    # The GX suites, copied: validation writes its run state next to them.
    gx = Path(params.validate_.gx_root) / "gx"
    if not gx.exists():
        shutil.copytree(PROJECT / "gx", gx, ignore=shutil.ignore_patterns("uncommitted"))
    ingest.run(params)
    validate.run(params)
    preprocess.run(params)
    data = load_processed(params)
    export.mkdir(parents=True, exist_ok=True)
    for split in (TRAIN, VALID, TEST):
        rows = data.positives(TARGET, split)[["user_idx", "item_idx"]]
        rows.columns = ["user", "item"]
        rows.to_csv(export / f"{split}.tsv", sep="\t", index=False)
    if data.candidates is not None:
        lines = [
            "\t".join(map(str, [row.user_idx, row.item_idx, *row.negatives]))
            for row in data.candidates.itertuples()
        ]
        (export / "candidates.tsv").write_text("user\titems\n" + "\n".join(lines) + "\n")
    return export


def run_peer(peer: Path, export: Path, model: str, seed: int, epochs: int) -> dict:
    """One RecBole run in its own venv and process."""
    command = [str(peer.absolute()), str(HERE / "peer_recbole.py"), "--split", str(export)]
    command += ["--model", model, "--seed", str(seed), "--epochs", str(epochs)]
    if (export / "candidates.tsv").exists():
        command += ["--candidates", str(export / "candidates.tsv")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    # RecBole writes log folders (log_tensorboard/) into its working directory: the cache's.
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, cwd=CACHE)
    if done.returncode:
        raise RuntimeError(f"RecBole {model} seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mtrec_baseline(params: Params, model: str, seed: int) -> dict:
    """popularity (counts), or a trained baseline (BPR, LightGCN, LightGCN joint) from the
    baselines stage's trainer."""
    data = load_processed(params)
    test = evaluate.build_test_set(params, data)
    if model == "popularity":
        scores = evaluate.score_popularity(data, test, params)
        return {"metrics": {m: v["mean"] for m, v in scores.items()}, "train_seconds": 0.0}
    trained, info = baselines.train_baseline(params, data, model, seed)
    metrics = evaluate.score_baseline([trained], test, params)["per_seed"][0]
    return {
        "metrics": metrics,
        f"valid_ndcg@{K}": info[f"valid_ndcg@{K}"],
        "epochs_run": info["epochs_run"],
        "train_seconds": info["train_seconds"],
        "curve": info["curve"],
    }


def mtrec_strategy(params: Params, strategy: str, seed: int) -> dict:
    """One transfer strategy (pretraining first when it needs the source model). With
    full-ranking early stopping (``transfer.train.valid_negatives: 0``) its valid curve is
    RecBole's validation, so it counts towards time to quality (pretraining time included)."""
    one = params.model_copy(update={"eval": params.eval.model_copy(update={"seeds": [seed]})})
    pretrain_seconds = 0.0
    if get_strategy(strategy).needs_source:
        start = time.perf_counter()
        pretrain.run(one)
        pretrain_seconds = time.perf_counter() - start
    data = load_processed(one)
    rows = target_rows(one, data)
    model, info = train_strategy(one, data, strategy, seed, rows, torch.device("cpu"))
    metrics = evaluate.score_model(model, evaluate.build_test_set(one, data), one)
    result = {
        "metrics": metrics,
        "train_seconds": round(pretrain_seconds + info.pop("train_seconds", 0.0), 3),
        "pretrain_seconds": round(pretrain_seconds, 3),
    }
    curve = info.pop("curve", None)
    cfg = one.transfer.train
    if curve and cfg.early_stopping == "ndcg" and cfg.valid_negatives == 0:
        result["curve"] = [[round(pretrain_seconds + t, 3), v] for t, v in curve]
        result[f"valid_ndcg@{K}"] = max(v for _, v in curve)
    return result | {"info": info}


def entry_model(entry: dict) -> str:
    """What a quality.yaml entry trains: a transfer strategy or a baseline of the stage."""
    return entry.get("strategy") or entry["baseline"]


def mtrec_entry(params: Params, entry: dict, seed: int) -> dict:
    """One seed of a quality.yaml entry: its strategy, or its baseline (e.g. lightgcn_joint)."""
    if "baseline" in entry:
        return mtrec_baseline(params, entry["baseline"], seed)
    return mtrec_strategy(params, entry["strategy"], seed)


def cached(path: Path, policy: str, compute) -> dict | None:
    """The cached result at ``path``, or (policy ``cached-only``: None) compute, store and
    return it; policy ``force`` always computes."""
    if path.exists() and policy != "force":
        return json.loads(path.read_text())
    if policy == "cached-only":
        return None
    start = time.perf_counter()
    result = compute() | {"wall_seconds_total": round(time.perf_counter() - start, 3)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    print(f"{path.relative_to(CACHE)}: {json.dumps(result['metrics'])}", flush=True)
    return result


def run_protocol(name: str, spec: dict, seeds: list[int], peer: Path, policy: str) -> dict:
    """Every model of both sides on one protocol, per seed (the runs there are, by model)."""
    params = protocol_params(name, spec, seeds)
    if policy == "cached-only" and not (CACHE / name / "export" / "test.tsv").exists():
        return {}
    export = prepare(name, params)
    results: dict[str, dict] = {}
    for label, model in PEER_MODELS.items():
        for seed in seeds:
            path = CACHE / name / "recbole" / label / f"seed{seed}.json"
            results.setdefault(f"RecBole {label}", {})[seed] = cached(
                path,
                policy,
                lambda m=model, s=seed: run_peer(peer, export, m, s, spec["recbole"]["epochs"]),
            )
    for model in PEER_MODELS:
        for seed in seeds:
            path = CACHE / name / "mtrec" / model / f"seed{seed}.json"
            results.setdefault(f"mtrec {model}", {})[seed] = cached(
                path, policy, lambda m=model, s=seed: mtrec_baseline(params, m, s)
            )
    for label, entry in spec["mtrec"].items():
        tuned = protocol_params(name, spec, seeds, entry.get("params"))
        # Its own model folders: entries differ in model / training settings.
        slug = label.replace(" ", "-")
        tuned = tuned.model_copy(
            update={
                "paths": tuned.paths.model_copy(
                    update={
                        key: str(Path(getattr(tuned.paths, key)) / slug)
                        for key in ("pretrained", "transferred", "reports")
                    }
                )
            }
        )
        for seed in seeds:
            path = CACHE / name / "mtrec" / slug / f"seed{seed}.json"
            results.setdefault(f"mtrec {label} ({entry_model(entry)})", {})[seed] = cached(
                path, policy, lambda s=seed, e=entry, p=tuned: mtrec_entry(p, e, s)
            )
    done = {m: {s: r for s, r in runs.items() if r is not None} for m, runs in results.items()}
    return {m: runs for m, runs in done.items() if runs}


def summarise(results: dict) -> dict:
    """mean ± std per metric over seeds, mean training seconds."""
    out = {}
    for model, seeds in results.items():
        runs = list(seeds.values())
        metrics = {}
        for metric in runs[0]["metrics"]:
            values = [r["metrics"][metric] for r in runs if metric in r["metrics"]]
            if len(values) == len(runs) and isinstance(values[0], float):
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                metrics[metric] = {"mean": statistics.fmean(values), "std": std}
        out[model] = {
            "metrics": metrics,
            "train_seconds": statistics.fmean(r["train_seconds"] for r in runs),
            "seeds": len(runs),
        }
    return out


def time_to_quality(results: dict, headline: str) -> dict | None:
    """RecBole's best model (by the headline test metric): its best valid NDCG@10 and training
    seconds; for each mtrec model with a validation curve, the first training second its valid
    NDCG@10 reaches that score (mean over seeds that reach it)."""
    summary = summarise(results)
    peers = {m: s for m, s in summary.items() if m.startswith("RecBole") and "popularity" not in m}
    if not peers:
        return None
    best = max(peers, key=lambda m: peers[m]["metrics"][headline]["mean"])
    target = statistics.fmean(r[f"valid_ndcg@{K}"] for r in results[best].values())
    out = {"recbole_model": best, f"recbole_valid_ndcg@{K}": target, "recbole_seconds": 0.0}
    out["recbole_seconds"] = statistics.fmean(
        next(t for t, v in r["curve"] if v >= max(s for _, s in r["curve"]))
        for r in results[best].values()
    )
    out["mtrec"] = {}
    for model, seeds in results.items():
        if not model.startswith("mtrec") or "curve" not in next(iter(seeds.values())):
            continue
        reached = [next((t for t, v in r["curve"] if v >= target), None) for r in seeds.values()]
        hits = [t for t in reached if t is not None]
        out["mtrec"][model] = {
            "seconds": statistics.fmean(hits) if hits else None,
            "seeds_reaching": len(hits),
        }
    return out


def _cell(metrics: dict, name: str) -> str:
    value = metrics.get(name)
    return "—" if value is None else f"{value['mean']:.4f} ± {value['std']:.4f}"


def markdown(report: dict) -> str:
    """quality.md: one table per protocol, then time to RecBole's best score."""
    lines = [
        "# Ranking quality: mtrec vs RecBole 1.2.1 (`make bench-quality`)",
        "",
        f"- `make bench-quality` ran `{report['command']}`; date {report['date']}; "
        f"machine: {report['machine']}",
        f"- Wall time of this run: {report['wall_seconds']:.0f} s (results already cached are "
        "not recomputed; each run's own time is in quality.json); load average at start "
        f"{report['load_start']}, at end {report['load_end']}.",
        "- Same target rows, splits and candidates on both sides (exported from mtrec's "
        "preprocess); seeds "
        f"{report['seeds']}, mean ± std; train s = mean training seconds per run (RecBole: its "
        "train epochs only; mtrec strategies: pretraining + target training; one torch thread "
        "each).",
        "",
    ]
    for proto in report["protocols"].values():
        columns = [f"ndcg@{K}", f"hr@{K}", f"recall@{K}"]
        if proto["headline"].startswith("sampled"):
            columns = [f"sampled_hr@{K}", f"sampled_ndcg@{K}", *columns]
        lines += [f"## {proto['title']}", "", f"Headline: {proto['headline']}.", ""]
        for label, entry in proto.get("entries", {}).items():
            overlay = json.dumps(entry.get("params", {}))
            lines.append(f"- mtrec {label}: `{entry_model(entry)}`, params overlay `{overlay}`")
        lines += [""] if proto.get("entries") else []
        lines += ["| model | " + " | ".join(columns) + " | train s | seeds |"]
        lines += ["|---" * (len(columns) + 3) + "|"]
        for model, s in proto["summary"].items():
            cells = " | ".join(_cell(s["metrics"], c) for c in columns)
            lines.append(f"| {model} | {cells} | {s['train_seconds']:.1f} | {s['seeds']} |")
        ttq = proto.get("time_to_quality")
        if ttq:
            lines += [
                "",
                f"Time to RecBole's best valid NDCG@10 ({ttq['recbole_model']}: "
                f"{ttq[f'recbole_valid_ndcg@{K}']:.4f}, reached after "
                f"{ttq['recbole_seconds']:.1f} s of its training):",
            ]
            for model, t in ttq["mtrec"].items():
                when = f"{t['seconds']:.1f} s" if t["seconds"] is not None else "not reached"
                lines.append(f"- {model}: {when} ({t['seeds_reaching']} seeds reach it)")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peer-python", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=HERE / "quality.yaml")
    parser.add_argument("--protocols", nargs="*", help="a subset of quality.yaml's protocols")
    policy = parser.add_mutually_exclusive_group()
    policy.add_argument("--force", action="store_true", help="recompute cached results")
    policy.add_argument(
        "--cached-only", action="store_true", help="report the cached results, compute nothing"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the peer: the same footing on shared cores
    os.chdir(PROJECT)  # params.yaml's relative paths (the bundled data) resolve from here
    config = yaml.safe_load(args.config.read_text())
    start, load_start = time.perf_counter(), os.getloadavg()
    report = {
        "command": " ".join(["python benchmarks/quality.py", *sys.argv[1:]]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"torch {torch.__version__}",
        "seeds": config["seeds"],
        "protocols": {},
    }
    for name, spec in config["protocols"].items():
        if args.protocols and name not in args.protocols:
            continue
        policy = "force" if args.force else "cached-only" if args.cached_only else "missing"
        results = run_protocol(name, spec, config["seeds"], args.peer_python, policy)
        if not results:
            continue
        report["protocols"][name] = {
            "title": spec["title"],
            "headline": spec["headline"],
            "entries": spec["mtrec"],
            "summary": summarise(results),
            "time_to_quality": time_to_quality(results, spec["headline"]),
            "runs": {m: {str(s): r for s, r in seeds.items()} for m, seeds in results.items()},
        }
        report |= {"wall_seconds": time.perf_counter() - start}
        report |= {"load_start": "/".join(f"{x:.2f}" for x in load_start)}
        report |= {"load_end": "/".join(f"{x:.2f}" for x in os.getloadavg())}
        (HERE / "quality.json").write_text(json.dumps(report, indent=1))
        (HERE / "quality.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
