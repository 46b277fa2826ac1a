"""Render benchmarks/results.json as benchmarks/README.md and a throughput plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

ARCHITECTURES = ("shared_bottom", "mmoe", "ple", "esmm")


SIDES = (("peer", "torch-rechub 0.9.0"), ("mtrec", "mtrec"), ("mtrec_no_bn", "mtrec, no BN"))


def _rate(entry: dict, side: str, arch: str) -> str:
    return f"{entry[side][arch]['samples_per_s']:,}" if side in entry else "—"


def _ratio(entry: dict, side: str, arch: str) -> str:
    if "peer" not in entry:
        return "—"
    return f"{entry[side][arch]['samples_per_s'] / entry['peer'][arch]['samples_per_s']:.2f}x"


def _auc(got: dict | None, metric: str) -> str:
    """One side's ``metric`` as mean ± std over the seeds ("—" for a side that did not run)."""
    return f"{got[metric]:.4f} ± {got[metric + '_std']:.4f}" if got else "—"


def _training_tables(training: dict) -> list[str]:
    lines = [
        "| model | batch | torch-rechub samples/s | mtrec samples/s | ratio "
        "| mtrec, no BN samples/s | ratio | no BN vs floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batch, entry in training.items():
        floor = entry["floor"]["samples_per_s"]
        for arch in ARCHITECTURES:
            vs_floor = (
                f"{entry['mtrec_no_bn'][arch]['samples_per_s'] / floor:.2f}x"
                if arch == "shared_bottom"
                else ""
            )
            lines.append(
                f"| {arch} | {batch} | {_rate(entry, 'peer', arch)} "
                f"| {_rate(entry, 'mtrec', arch)} | {_ratio(entry, 'mtrec', arch)} "
                f"| {_rate(entry, 'mtrec_no_bn', arch)} | {_ratio(entry, 'mtrec_no_bn', arch)} "
                f"| {vs_floor} |"
            )
        lines.append(f"| floor (plain loop, shared_bottom) | {batch} | | | | {floor:,} | | |")
    lines += [
        "",
        "Test AUC after the epoch, mean ± std over the seeds (like AUC on clicked rows):",
        "",
        "| model | batch | "
        + " | ".join(f"{name} click" for _, name in SIDES)
        + " | "
        + " | ".join(f"{name} like" for _, name in SIDES)
        + " |",
        "|---|---|" + "---|" * 2 * len(SIDES),
    ]
    for batch, entry in training.items():
        metrics = ("click_auc", "like_auc")
        for arch in ARCHITECTURES:
            cells = [_auc(entry.get(side, {}).get(arch), m) for m in metrics for side, _ in SIDES]
            lines.append(f"| {arch} | {batch} | " + " | ".join(cells) + " |")
        floor_cells = [
            _auc(entry["floor"], m) if side == "mtrec_no_bn" else ""
            for m in metrics
            for side, _ in SIDES
        ]
        lines.append(
            f"| floor (plain loop, shared_bottom) | {batch} | " + " | ".join(floor_cells) + " |"
        )
    return lines


def _plot(result: dict, path: Path) -> None:
    training = result["training"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(SIDES)
    for ax, (batch, entry) in zip(axes, training.items(), strict=False):
        xs = range(len(ARCHITECTURES))
        for i, (side, name) in enumerate(SIDES):
            if side in entry:
                rates = [entry[side][a]["samples_per_s"] for a in ARCHITECTURES]
                offset = (i - (len(SIDES) - 1) / 2) * width
                ax.bar([x + offset for x in xs], rates, width, label=name)
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
    seeds = len(next(iter(result["training"].values()))["floor"]["runs_samples_per_s"])
    rank = result["ranking"]
    lines = [
        "# Benchmarks",
        "",
        f"Regenerate: `{result['command']}` (about {result['bench_seconds'] // 60 + 1} min; "
        "creates `benchmarks/.venv` for torch-rechub on first use). Every number below comes "
        "from one run, written to `results.json`.",
        "",
        f"- Date: {result['date']}; machine: {result['machine']}; device: {result['device']}",
        *(
            [
                "- On CUDA mtrec and the floor train with the rows on the device and bf16 "
                "autocast (the core's `amp: auto`); torch-rechub in fp32 (it has no autocast "
                "option), its DataLoader copying each batch."
            ]
            if result["device"] != "cpu"
            else []
        ),
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
        f"- Each side trains {seeds} one-epoch runs per model and batch size, seeds 0-"
        f"{seeds - 1}, interleaved (peer, mtrec, floor, next seed) so load hits all alike; "
        "samples/s is their median, AUC their mean ± std. torch-rechub runs its DataLoader + "
        "`MTLTrainer.train_one_epoch`; mtrec its core's `TensorBatches` + `train_epoch`.",
        "- torch-rechub's MLP always puts BatchNorm after each hidden layer, and so do mtrec's "
        "by default (`model.batch_norm: true`): **mtrec** is the like-for-like comparison. "
        "**mtrec, no BN** is the same model without it; the floor is that shared-bottom in the "
        "shortest loop plain PyTorch allows.",
        "",
        "## Training throughput",
        "",
        *_training_tables(result["training"]),
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
            "Quick settings (`--quick-stages`: 1 seed, strategies scratch + finetune, 2 epochs, "
            "one curve point), "
            if result["stages_quick"]
            else "params.yaml as it is (the whole bundled pipeline), "
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
