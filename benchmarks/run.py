"""``make bench``: every number of benchmarks/README.md, measured in one run on the same rows.

Training throughput (mtrec, the plain-PyTorch floor, torch-rechub in its own venv),
full-ranking evaluation throughput, each pipeline stage's wall time and peak RSS, and
scaling to 4x and 16x the rows. Writes benchmarks/results.json; report.py renders it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(HERE))

import models  # noqa: E402
import report  # noqa: E402
import rows  # noqa: E402
import stages  # noqa: E402

ARCHITECTURES = ("shared_bottom", "mmoe", "ple", "esmm")
# Every side trains on the GPU when there is one (mtrec and the floor with bf16 autocast).
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def log(message: str) -> None:
    """Progress on stderr (the bench runs for minutes)."""
    print(
        f"[bench {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {message}",
        file=sys.stderr,
        flush=True,
    )


# mtrec's two configurations: its default, BatchNorm after every MLP hidden layer as in the
# peer's MLPs (the like-for-like comparison), and the same model without it (the floor's).
CONFIGS = {"mtrec": True, "mtrec_no_bn": False}


def summarise(runs: list[models.Run], n_rows: int) -> dict:
    """Median samples/s over the runs (one epoch each, one seed each) and the AUCs' mean and
    std over them."""
    rates = [n_rows / r.epoch_seconds[-1] for r in runs]
    out: dict = {
        "samples_per_s": round(statistics.median(rates)),
        "runs_samples_per_s": [round(r) for r in rates],
    }
    for metric in ("click_auc", "like_auc"):
        values = [getattr(r, metric) for r in runs]
        out[metric] = round(statistics.mean(values), 4)
        out[f"{metric}_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
        out[f"runs_{metric}"] = [round(v, 4) for v in values]
    return out


def peer(python: Path, rows_path: Path, batch: int, threads: int, seed: int) -> dict:
    """torch-rechub, one epoch per model from ``seed``, in its own venv: {model: Run}."""
    done = subprocess.run(
        [
            str(python),
            str(HERE / "peer_rechub.py"),
            str(rows_path),
            "--batch",
            str(batch),
            "--epochs",
            "1",
            "--threads",
            str(threads),
            "--seed",
            str(seed),
            "--device",
            DEVICE.type,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])["results"]
    return {
        m: models.Run(
            r[str(batch)]["epoch_seconds"], r[str(batch)]["click_auc"], r[str(batch)]["like_auc"]
        )
        for m, r in results.items()
    }


def training(rows_path: Path, peer_python: Path | None, repeats: int, threads: int) -> dict:
    """Per batch size, ``repeats`` rounds (seed = round): the peer's four models, then
    mtrec's in both configurations and the floor, one epoch each, interleaved so load hits
    all alike."""
    train, test, side = models.load_rows(str(rows_path))
    n = len(train["user"])
    out: dict = {}
    for batch in (1024, 4096):
        entry: dict = {"loadavg": [os.getloadavg()[0]]}
        runs: dict[str, dict[str, list[models.Run]]] = {
            side_name: {a: [] for a in ARCHITECTURES} for side_name in ("peer", *CONFIGS)
        }
        floor: list[models.Run] = []
        for rep in range(repeats):
            if peer_python is not None:
                log(f"peer, batch {batch}, seed {rep}")
                for arch, run in peer(peer_python, rows_path, batch, threads, rep).items():
                    runs["peer"][arch].append(run)
            log(f"mtrec + floor, batch {batch}, seed {rep}")
            for arch in ARCHITECTURES:
                for config, batch_norm in CONFIGS.items():
                    runs[config][arch].append(
                        models.train_mtrec(
                            arch, train, test, side, batch, 1, rep, batch_norm, DEVICE
                        )
                    )
                if arch == "shared_bottom":
                    floor.append(models.train_floor(train, test, side, batch, 1, rep, DEVICE))
        for side_name, by_arch in runs.items():
            if any(by_arch.values()):
                entry[side_name] = {a: summarise(r, n) for a, r in by_arch.items()}
        entry["floor"] = summarise(floor, n)
        entry["loadavg"].append(os.getloadavg()[0])
        out[str(batch)] = entry
    return out


def ranking(rows_path: Path, repeats: int) -> list[dict]:
    """Full ranking of every user with the core's ranking_metrics and score_matrix, over the
    pipeline's candidates (every target item) and over every item; train positives masked,
    test positives relevant (speed does not depend on the weights: the model is untrained)."""
    import numpy as np

    from mtrec.core.metrics import ranking_metrics

    train, test, side = models.load_rows(str(rows_path))
    model = models.bench_model("shared_bottom", side, 0).to(DEVICE).eval()
    users = torch.arange(1, side["n_users"])
    out = []
    for name, items in (
        ("target items", torch.from_numpy(np.load(rows_path)["target_items"])),
        ("all items", torch.arange(1, side["n_items"])),
    ):
        column = torch.full((side["n_items"],), -1, dtype=torch.long)
        column[items] = torch.arange(len(items))

        def pairs(split: dict, column: torch.Tensor = column) -> tuple[torch.Tensor, ...]:
            keep = (split["click"] > 0) & (column[split["item"]] >= 0)
            return split["user"][keep], column[split["item"][keep]]

        seen, relevant = pairs(train), pairs(test)
        on_device = items.to(DEVICE)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            ranking_metrics(
                lambda u, items=on_device: model.score_matrix(u.to(DEVICE), items),
                users,
                seen,
                relevant,
                len(items),
                10,
                256,
            )
            seconds.append(time.perf_counter() - start)
        best = statistics.median(seconds)
        out.append(
            {
                "candidates": name,
                "users": len(users),
                "items": len(items),
                "seconds": round(best, 3),
                "users_per_s": round(len(users) / best),
            }
        )
    return out


def scaling(
    processed: Path, scratch: Path, factors: list[int], threads: int, limit: int | None
) -> list[dict]:
    """mtrec shared_bottom, one epoch at batch 4096, each scale in a fresh process (its own
    peak RSS)."""
    results = []
    for k in factors:
        path = scratch / f"rows_x{k}.npz"
        rows.build_rows(processed, path, replicate=k, limit=limit)
        log(f"scaling x{k}")
        done = subprocess.run(
            [
                sys.executable,
                str(HERE / "run.py"),
                "--scale-worker",
                str(path),
                "--threads",
                str(threads),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append({"factor": k} | json.loads(done.stdout.strip().splitlines()[-1]))
        path.unlink()
    return results


def peak_rss_mb() -> float:
    """This process's peak RSS. Not getrusage: Linux carries ru_maxrss across fork + exec, so
    a worker would report its parent's peak; VmHWM starts afresh with the new image."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def scale_worker(path: str, threads: int) -> None:
    """One scaling point (child process): prints rows, samples/s, seconds and peak RSS."""
    torch.set_num_threads(threads)
    train, test, side = models.load_rows(path)
    run = models.train_mtrec("shared_bottom", train, test, side, 4096, 1, device=DEVICE)
    n = len(train["user"])
    print(
        json.dumps(
            {
                "rows": n,
                "seconds": round(run.epoch_seconds[0], 2),
                "samples_per_s": round(n / run.epoch_seconds[0]),
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def main() -> None:
    """Run every part and write results.json and README.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peer-python", type=Path, help="python of the torch-rechub venv")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--train-rows", type=int, help="a random subset of the train rows (a shorter bench)"
    )
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--quick-stages",
        action="store_true",
        help="time the stages with short settings (1 seed, 2 strategies, 2 epochs) instead of "
        "params.yaml as it is",
    )
    parser.add_argument("--scale-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_worker:
        scale_worker(args.scale_worker, args.threads)
        return
    torch.set_num_threads(args.threads)
    # The arguments make passes through BENCH_ARGS (all but the peer's interpreter).
    argv = sys.argv[1:]
    if "--peer-python" in argv:
        at = argv.index("--peer-python")
        argv = argv[:at] + argv[at + 2 :]
    extra = argv
    started = time.perf_counter()
    result: dict = {
        "command": "make bench" + (f' BENCH_ARGS="{" ".join(extra)}"' if extra else ""),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "train_rows": args.train_rows,
        "loadavg_start": os.getloadavg(),
        "device": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu",
    }
    with tempfile.TemporaryDirectory(prefix="mtrec-bench-") as tmp:
        scratch = Path(tmp)
        log("pipeline stages in a scratch workspace")
        workspace = scratch / "workspace"
        workspace.mkdir()
        result["stages"] = stages.run_pipeline(PROJECT, workspace, args.quick_stages, args.threads)
        result["stages_quick"] = args.quick_stages
        processed = workspace / "data" / "processed"
        rows_path = scratch / "rows.npz"
        result["rows"] = rows.build_rows(processed, rows_path, limit=args.train_rows)
        result["training"] = training(rows_path, args.peer_python, args.repeats, args.threads)
        log("full ranking")
        result["ranking"] = ranking(rows_path, args.repeats)
        result["scaling"] = scaling(processed, scratch, args.scales, args.threads, args.train_rows)
    result["loadavg_end"] = os.getloadavg()
    result["bench_seconds"] = round(time.perf_counter() - started)
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    report.write(result, HERE)
    log(f"done in {result['bench_seconds']} s: benchmarks/README.md, results.json")


if __name__ == "__main__":
    main()
