"""Seconds per training step (batch of 2048 source rows) with the LM item tower frozen (N = 0)
or its top N sentence-encoder layers trained (``model.lm_finetune_layers``), on the processed
data of the current project (docs/lm_encoder.md quotes the numbers).

    python -m mtrec embed_items    # with model.item_encoder lm, model.lm_finetune_layers >= 1
    python scripts/time_lm_finetune.py 0 1 [--embeddings data/embeddings] [--steps 5]

``--embeddings`` may name the value, e.g. ``runs/emb{layers}`` (token states are per N).

The same real training step as ``pretrain`` (``train_epoch``: forward, task losses, backward,
fused Adam) on the device ``pretrain.device`` picks. The models take turns, step by step, so a
busy shared machine slows them alike; one warm-up step each is not timed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mtrec.config import load_params
from mtrec.core.batches import TensorBatches
from mtrec.core.trainer import autocast_dtype, make_optimizer, pick_device, train_epoch
from mtrec.core.weighting import make_weighting
from mtrec.data.splitting import SOURCE, TRAIN
from mtrec.data.tensors import task_columns
from mtrec.stages.modeling import build_model, load_processed

BATCH = 2048


class Run:
    """One model with ``layers`` trained encoder layers, its optimizer and timings."""

    def __init__(self, layers: int, embeddings: str) -> None:
        overrides = {"model": {"item_encoder": "lm", "lm_finetune_layers": layers}}
        paths = {"embeddings": embeddings.format(layers=layers)}
        params = load_params("params.yaml", overrides | {"paths": paths})
        self.data = load_processed(params)
        cfg = params.pretrain
        self.layers, self.device = layers, pick_device(cfg.device)
        self.amp = autocast_dtype(cfg.amp, self.device)
        self.model = build_model(params, self.data, seed=0).to(self.device)
        self.weighting = make_weighting(cfg.weighting, cfg.task_weights, cfg.dwa_temperature)
        self.weighting.to(self.device)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        trainable += list(self.weighting.parameters())
        self.optimizer = make_optimizer(trainable, cfg.lr, cfg.weight_decay)
        self.seconds: list[float] = []

    def step(self, batch: dict[str, torch.Tensor], timed: bool) -> None:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        sync = torch.cuda.synchronize if self.device.type == "cuda" else lambda: None
        sync()
        start = time.perf_counter()
        batches = TensorBatches(batch, BATCH)
        train_epoch(self.model, batches, self.optimizer, self.weighting, amp=self.amp)
        sync()
        if timed:
            self.seconds.append(time.perf_counter() - start)

    def summary(self) -> dict[str, object]:
        with tempfile.TemporaryDirectory() as tmp:
            self.model.cpu().save(Path(tmp) / "model.pt")
            size = (Path(tmp) / "model.pt").stat().st_size
        return {
            "layers": self.layers,
            "median_s": round(statistics.median(self.seconds), 3),
            "min_s": round(min(self.seconds), 3),
            "max_s": round(max(self.seconds), 3),
            "checkpoint_mb": round(size / 1e6, 1),
            "device": str(self.device),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("layers", type=int, nargs="+", help="model.lm_finetune_layers values")
    parser.add_argument("--embeddings", default="data/embeddings", help="embed_items output")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per value")
    args = parser.parse_args()
    runs = [Run(layers, args.embeddings) for layers in args.layers]
    train = task_columns(runs[0].data.rows(SOURCE, TRAIN))
    order = torch.randperm(len(train["user"]), generator=torch.Generator().manual_seed(0))
    unique = []
    for step in range(args.steps + 1):  # step 0 warms up (allocator, kernels)
        rows = order[step * BATCH : (step + 1) * BATCH]
        batch = {k: v[rows] for k, v in train.items()}
        unique.append(len(torch.unique(batch["item"])))
        for run in runs:
            run.step(batch, timed=step > 0)
    print(
        f"{len(train['user'])} source train rows = {-(-len(train['user']) // BATCH)} steps "
        f"per epoch; {statistics.mean(unique):.0f} distinct items per batch; "
        f"{torch.get_num_threads()} threads"
    )
    for run in runs:
        print(run.summary(), flush=True)


if __name__ == "__main__":
    main()
