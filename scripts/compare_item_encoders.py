"""Compare item encoders (model.item_encoder id vs lm) trained on the same processed data.

Each run directory is a workspace where ``pretrain``, ``transfer <strategy>`` ran with one
encoder (same ``paths.processed``, same seeds); this scores all of them on the same test split
and writes one markdown table (all users, cold users, cold items; mean ± std over seeds):

    python scripts/compare_item_encoders.py id=runs/id lm=runs/lm --out reports/lm_encoder.md
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mtrec.config import load_params
from mtrec.stages.evaluate import COLD, COLD_ITEM, COLD_ITEM_FULL, evaluation_report
from mtrec.stages.modeling import load_checkpoint, load_processed, transferred_path

COLUMNS = ("ndcg@10", f"{COLD}_ndcg@10", f"{COLD_ITEM}_ndcg@10", f"{COLD_ITEM}_hr@10")
COLUMNS += (f"{COLD_ITEM_FULL}_ndcg@10", f"{COLD_ITEM_FULL}_hr@10")


def score_run(run: Path) -> dict:
    """evaluation_report of every strategy trained in ``run`` (paths relative to it)."""
    cwd = Path.cwd()
    os.chdir(run)
    try:
        params = load_params("params.yaml")
        models = {
            name: [load_checkpoint(transferred_path(params, name, s)) for s in params.eval.seeds]
            for name in params.transfer.strategies
        }
        return evaluation_report(params, load_processed(params), models)
    finally:
        os.chdir(cwd)


def table(reports: dict[str, dict]) -> str:
    """Markdown: one row per (encoder, strategy), popularity once."""
    first = next(iter(reports.values()))
    lines = [
        f"Target {first['target']}, test users {first['test_users']} ({first['cold_users']} "
        f"cold), seeds {first['seeds']}; {first['cold_item_rows']} test rows of "
        f"{first['cold_items']} cold items (no target training interaction), ranked among the "
        f"{first['cold_item_pool']} cold target items (`{COLD_ITEM}_`) and among all target "
        f"items (`{COLD_ITEM_FULL}_`).",
        "",
        "| encoder | strategy | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    rows = [(enc, name, m) for enc, r in reports.items() for name, m in r["strategies"].items()]
    for encoder, name, metrics in rows:
        if name == "popularity" and encoder != next(iter(reports)):
            continue
        label = "—" if name == "popularity" else encoder
        cells = [
            f"{metrics[c]['mean']:.4f} ± {metrics[c]['std']:.4f}" if c in metrics else "—"
            for c in COLUMNS
        ]
        lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="encoder=run_dir")
    parser.add_argument("--out", type=Path, default=Path("reports/lm_encoder.md"))
    args = parser.parse_args()
    reports = {}
    for spec in args.runs:
        name, run = spec.split("=", 1)
        reports[name] = score_run(Path(run))
    hashes = {r["test_hash"] for r in reports.values()}
    if len(hashes) != 1:
        raise SystemExit(f"the runs were scored on different test splits: {hashes}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(reports))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
