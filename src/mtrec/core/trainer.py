"""The train and eval steps, and a fit loop with early stopping on validation loss or score."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch

from mtrec.core import distributed
from mtrec.core.batches import MixedBatches, Refresh, TensorBatches
from mtrec.core.losses import RankingLoss, task_losses
from mtrec.core.multitask import SCORE_TASKS, MultiTaskModel
from mtrec.core.weighting import StaticWeights, make_weighting

log = logging.getLogger(__name__)

# Parameters of the sentence encoder's fine-tuned top layers (trained at ``lm_lr``).
LM_TOP = "encoder.lm_top."
# Extra loss term on top of the task losses (a transfer regulariser such as L2-SP).
Penalty = Callable[[MultiTaskModel], torch.Tensor | None]


@dataclass(frozen=True)
class Monitor:
    """A validation score to early-stop on instead of the validation loss (higher is better).

    ``floor`` is what a model gets without learning anything personal (popularity's score):
    the first epochs of a ranking model often sit on that plateau, and patience alone ends the
    run there. Early stopping waits until the best score is above it."""

    score: Callable[[MultiTaskModel], float]
    floor: float = -math.inf


class TrainSettings(Protocol):
    """What the trainer reads from the typed config (``mtrec.config.TrainConfig``)."""

    epochs: int
    batch_size: int
    lr: float
    lm_lr: float
    weight_decay: float
    patience: int
    warmup_epochs: int
    min_gain: float
    max_minutes: float | None
    task_weights: Mapping[str, float]
    weighting: str
    dwa_temperature: float
    gradnorm_alpha: float
    amp: str
    compile: bool


@dataclass
class FitResult:
    """What happened during training."""

    best_epoch: int
    best_valid_loss: float
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; under torchrun, this process's own GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", distributed.current().local)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (``auto``) or everywhere (``bf16``); None = full precision."""
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def make_optimizer(
    params: list[torch.nn.Parameter] | list[dict], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Adam with the fused kernel (one kernel for every parameter's update, CPU and CUDA)
    rather than one small op per tensor: the update is a large share of a small model's step."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)


def train_epoch(
    model: MultiTaskModel,
    batches: TensorBatches | MixedBatches,
    optimizer: torch.optim.Optimizer,
    weighting: StaticWeights,
    penalty: Penalty | None = None,
    forward: torch.nn.Module | None = None,
    amp: torch.dtype | None = None,
    ranking: RankingLoss | None = None,
) -> tuple[float, dict[str, float]]:
    """One pass over ``batches``; returns the mean training loss (penalty included) and each
    task's mean loss. ``forward`` is the module to call (the DDP wrapper in a process group),
    ``amp`` the autocast dtype (None: full precision), ``ranking`` the click loss when it is
    not pointwise BCE."""
    model.train()
    forward = model if forward is None else forward  # a compiled module has no truth value
    device_type = model.item_genres.device.type
    # Summed as tensors and read once per epoch: a .item() per batch would sync the GPU.
    total, n = torch.zeros(()), 0
    per_task: dict[str, torch.Tensor] = {}
    for batch in batches:
        with torch.autocast(device_type, dtype=amp or torch.float32, enabled=amp is not None):
            out = forward(batch["user"], batch["item"])
            pointwise = [t for t in weighting.weights if ranking is None or t != "click"]
            losses = task_losses(out, batch, model.item_genres, pointwise)
            if ranking is not None and "click" in weighting.weights:
                losses["click"] = ranking(model, batch)
        loss = weighting.combine(losses)
        extra = penalty(model) if penalty is not None else None
        if extra is not None:
            loss = loss + extra
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        rows = len(batch["user"])
        total = total.to(loss.device) + loss.detach() * rows
        for task, value in losses.items():
            per_task[task] = per_task.get(task, 0.0) + value.detach() * rows
        n += rows
    n = max(n, 1)
    return total.item() / n, {t: v.item() / n for t, v in per_task.items()}


@torch.no_grad()
def eval_loss(model: MultiTaskModel, batches: TensorBatches, weights: Mapping[str, float]) -> float:
    """Mean task loss under the static ``weights`` (no regulariser) over ``batches``."""
    model.eval()
    static = StaticWeights(weights)
    total, n = 0.0, 0
    for batch in batches:
        loss = static.combine(
            task_losses(
                model(batch["user"], batch["item"]), batch, model.item_genres, static.weights
            )
        )
        total += loss.item() * len(batch["user"])
        n += len(batch["user"])
    return total / max(n, 1)


def fit(
    model: MultiTaskModel,
    train: Mapping[str, torch.Tensor] | MixedBatches,
    valid: Mapping[str, torch.Tensor],
    cfg: TrainSettings,
    seed: int,
    device: torch.device,
    penalty: Penalty | None = None,
    refresh: Refresh | None = None,
    monitor: Monitor | None = None,
    ranking: RankingLoss | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FitResult:
    """Train with Adam; keep the weights of the epoch with the lowest validation loss.

    ``train`` is column tensors (shuffled each epoch) or batches that mix in source rows. Under
    torchrun each rank trains on its shard with 1/world of the batch; every rank sees the same
    validation loss, so all stop at the same epoch with the same weights. ``refresh`` rewrites
    the training columns each epoch (e.g. :class:`NegativeResampler`); ``monitor`` replaces
    the validation loss as the early-stopping criterion (e.g. validation NDCG); ``ranking`` is
    the click loss when not pointwise BCE. Stopping: once ``patience`` epochs passed without a
    relative gain of ``min_gain`` (counted from the end of ``warmup_epochs`` at the earliest)
    and the best score is above the monitor's floor; or when ``max_minutes`` of ``clock`` are
    spent (checked after each epoch)."""
    headless = [
        t
        for t, w in cfg.task_weights.items()
        if w and t in SCORE_TASKS and t not in model.spec.score_tasks
    ]
    if headless:
        raise ValueError(
            f"task_weights {headless} are above 0 but the model was built without those heads "
            f"(score_tasks {model.spec.score_tasks}); rebuild it with them"
        )
    start, started = time.perf_counter(), clock()
    rank = distributed.current()
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    shard, batch_size = (rank.rank, rank.world), max(1, cfg.batch_size // rank.world)
    if isinstance(train, MixedBatches):
        train.generator, train.shard, train.batch_size = generator, shard, batch_size
        train.refresh = refresh
        train_batches = train.to(device)
    else:
        train_batches = TensorBatches(train, batch_size, True, generator, shard, refresh)
        train_batches = train_batches.to(device)
    valid_batches = TensorBatches(valid, cfg.batch_size * 4).to(device)
    weighting = make_weighting(
        cfg.weighting, cfg.task_weights, cfg.dwa_temperature, cfg.gradnorm_alpha, model.shared_layer
    ).to(device)
    ranking = ranking.to(device) if ranking is not None else None
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    rest = [p for n, p in trainable if not n.startswith(LM_TOP)] + list(weighting.parameters())
    # The fine-tuned sentence-encoder layers (if any) get their own, pretrained-model rate.
    lm_top = [p for n, p in trainable if n.startswith(LM_TOP)]
    groups = [{"params": rest}] + ([{"params": lm_top, "lr": cfg.lm_lr}] if lm_top else [])
    optimizer = make_optimizer(groups, cfg.lr, cfg.weight_decay)
    valid_loss = eval_loss(model, valid_batches, cfg.task_weights)
    # (criterion, epoch, valid loss): the criterion is maximised.
    best = (monitor.score(model) if monitor else -valid_loss, 0, valid_loss)
    best_state = copy.deepcopy(model.state_dict())
    floor = monitor.floor if monitor else -math.inf
    gained = (best[0], 0)  # the score and epoch that last reset the patience
    history: list[dict[str, float]] = []
    epoch = 0
    # Without the MLP in the click score, the architecture's click tower gets no gradient.
    forward = distributed.wrap(model, device, find_unused=not model.spec.click_mlp)
    amp = autocast_dtype(cfg.amp, device)
    if cfg.compile:
        # Compiles on the first batches (seconds); pays off on long runs and on GPUs.
        forward = torch.compile(forward)
    trained = 0.0  # seconds spent in training epochs (validation not counted)
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        train_loss, task_means = train_epoch(
            model, train_batches, optimizer, weighting, penalty, forward, amp, ranking
        )
        trained += time.perf_counter() - epoch_start
        weighting.end_epoch(task_means)
        valid_loss = eval_loss(model, valid_batches, cfg.task_weights)
        score = monitor.score(model) if monitor else -valid_loss
        history.append(
            {"epoch": epoch, "train_seconds": trained, "train_loss": train_loss}
            | {"valid_loss": valid_loss}
            | ({"valid_score": score} if monitor else {})
            | {f"weight.{t}": w for t, w in weighting.multipliers().items()}
        )
        monitored = f" valid score {score:.4f}" if monitor else ""
        log.info("epoch %d: train %.4f valid %.4f%s", epoch, train_loss, valid_loss, monitored)
        if score > best[0]:
            best = (score, epoch, valid_loss)
            best_state = copy.deepcopy(model.state_dict())
        if score > gained[0] + cfg.min_gain * abs(gained[0]):
            gained = (score, epoch)
        if cfg.max_minutes is not None and clock() - started >= cfg.max_minutes * 60:
            log.info("time budget of %s min spent after epoch %d", cfg.max_minutes, epoch)
            break
        # Patience counts from the last real gain, and never from before the warm-up's end.
        if best[0] > floor and epoch - max(gained[1], cfg.warmup_epochs) > cfg.patience:
            break
    model.load_state_dict(best_state)
    return FitResult(best[1], best[2], epoch, time.perf_counter() - start, history)
