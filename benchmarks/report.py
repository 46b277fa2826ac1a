"""Render benchmarks/results.json as benchmarks/README.md and a throughput plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

ARCHITECTURES = ("shared_bottom", "mmoe", "ple", "esmm")


def _training_table(training: dict) -> list[str]:
    lines = [
        "| model | batch | mtrec samples/s | torch-rechub samples/s | ratio | floor ratio "
        "| mtrec click / like AUC | torch-rechub click / like AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batch, entry in training.items():
        floor = entry["floor"]
        for arch in ARCHITECTURES:
            ours, peer = entry["mtrec"][arch], entry.get("peer", {}).get(arch)
            ratio = f"{ours['samples_per_s'] / peer['samples_per_s']:.2f}x" if peer else "—"
            vs_floor = (
                f"{ours['samples_per_s'] / floor['samples_per_s']:.2f}x"
                if arch == "shared_bottom"
                else ""
            )
            peer_rate = f"{peer['samples_per_s']:,}" if peer else "—"
            peer_auc = f"{peer['click_auc']:.4f} / {peer['like_auc']:.4f}" if peer else "—"
            lines.append(
                f"| {arch} | {batch} | {ours['samples_per_s']:,} | {peer_rate} | {ratio} "
                f"| {vs_floor} | {ours['click_auc']:.4f} / {ours['like_auc']:.4f} | {peer_auc} |"
            )
        lines.append(
            f"| floor (plain loop, shared_bottom) | {batch} | {floor['samples_per_s']:,} | | | "
            f"| {floor['click_auc']:.4f} / {floor['like_auc']:.4f} | |"
        )
    return lines


def _plot(result: dict, path: Path) -> None:
    training = result["training"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (batch, entry) in zip(axes, training.items(), strict=False):
        xs = range(len(ARCHITECTURES))
        ours = [entry["mtrec"][a]["samples_per_s"] for a in ARCHITECTURES]
        peer = [entry.get("peer", {}).get(a, {}).get("samples_per_s", 0) for a in ARCHITECTURES]
        ax.bar([x - 0.2 for x in xs], ours, 0.4, label="mtrec")
        ax.bar([x + 0.2 for x in xs], peer, 0.4, label="torch-rechub 0.9.0")
        ax.axhline(entry["floor"]["samples_per_s"], color="k", ls="--", label="plain floor")
        ax.set_xticks(list(xs), ARCHITECTURES)
        ax.set_title(f"training, batch {batch}")
        ax.set_ylabel("samples/s")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(result: dict, folder: Path) -> None:
    """README.md (tables) and throughput.png (plot) in ``folder``."""
    _plot(result, folder / "throughput.png")
    load = result["loadavg_start"]
    rank = result["ranking"]
    lines = [
        "# Benchmarks",
        "",
        f"Regenerate: `{result['command']}` (about {result['bench_seconds'] // 60 + 1} min; "
        "creates `benchmarks/.venv` for torch-rechub on first use). Every number below comes "
        "from one run, written to `results.json`.",
        "",
        f"- Date: {result['date']}; machine: {result['machine']}; device: {result['device']}",
        f"- torch {result['torch']}, {result['threads']} torch threads per process; load "
        f"average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min), at end "
        f"{result['loadavg_end'][0]:.2f}. Other work on the machine slows both sides; ratios "
        "are measured interleaved, absolute numbers are lower bounds.",
        f"- Rows: ml-latest-small through `ingest`/`validate`/`preprocess`, source-domain "
        f"click/like rows (positives + sampled negatives): {result['rows']['train_rows']:,} "
        f"{'(a seeded random subset, `--train-rows`) ' if result.get('train_rows') else ''}"
        f"train, {result['rows']['test_rows']:,} test. Features on both sides: user id, item "
        "id, item title/tag tokens (mean), genres; embedding 16, bottom/experts [64, 32], "
        "towers [16], dropout 0.1, Adam 3e-3, one epoch per run. Two tasks on both sides, "
        "click and like (like over the entire space), weighted 1:1: mtrec's models are built "
        "with `score_tasks=(click, like)`, so neither trains a rating head.",
        "- samples/s: mtrec and floor are medians of "
        f"{len(next(iter(result['training'].values()))['mtrec']['shared_bottom']['runs_samples_per_s'])}"
        " one-epoch runs (fresh model each, interleaved); torch-rechub one epoch (its "
        "DataLoader + MTLTrainer.train_one_epoch). AUC: test click AUC, like AUC on clicked "
        "rows, after that epoch.",
        "",
        "## Training throughput",
        "",
        *_training_table(result["training"]),
        "",
        "![throughput](throughput.png)",
        "",
        "## Full-ranking evaluation",
        "",
        "Every bundled user, `ranking_metrics` + `score_matrix` (train positives masked, K=10, "
        "blocks of 256 users), median of the runs:",
        "",
        "| candidates | users | items | seconds | users/s |",
        "|---|---|---|---|---|",
        *(
            f"| {r['candidates']} | {r['users']} | {r['items']:,} | {r['seconds']} "
            f"| {r['users_per_s']:,} |"
            for r in rank
        ),
        "",
        "## Pipeline stages",
        "",
        (
            "Quick settings (1 seed, strategies scratch + finetune, 2 epochs, one curve point; "
            "`python benchmarks/run.py --full-pipeline` times params.yaml as it is), "
            if result["stages_quick"]
            else "params.yaml as it is, "
        )
        + "each `python -m mtrec <stage>` in a scratch workspace:",
        "",
        "| stage | wall s | peak RSS MB | ok |",
        "|---|---|---|---|",
        *(
            f"| {s['stage']} | {s['seconds']} | {s['peak_rss_mb']} | {'yes' if s['ok'] else 'no'} |"
            for s in result["stages"]
        ),
        f"| **total** | {sum(s['seconds'] for s in result['stages']):.1f} | "
        f"{max(s['peak_rss_mb'] for s in result['stages'])} | |",
        "",
        "## Scaling (mtrec shared_bottom, batch 4096, one epoch, rows replicated with new user "
        "ids)",
        "",
        "| rows | x | seconds | samples/s | peak RSS MB |",
        "|---|---|---|---|---|",
        *(
            f"| {s['rows']:,} | {s['factor']} | {s['seconds']} | {s['samples_per_s']:,} "
            f"| {s['peak_rss_mb']} |"
            for s in result["scaling"]
        ),
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines))
