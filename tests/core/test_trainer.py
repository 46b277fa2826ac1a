import itertools
import math

import pytest
import torch

from mtrec.core.batches import TensorBatches
from mtrec.core.evaluation import RankingTask, evaluate_model
from mtrec.core.metrics import auc
from mtrec.core.trainer import Monitor, autocast_dtype, eval_loss, fit

from .helpers import SYNTHETIC_TRAINING as CFG
from .helpers import learnable_rows, tiny_model

CPU = torch.device("cpu")


def test_loss_falls_and_the_problem_is_learned() -> None:
    model = tiny_model()
    train, valid = learnable_rows(2000, seed=1), learnable_rows(500, seed=2)
    before = eval_loss(model, TensorBatches(valid, 256), CFG.task_weights)
    result = fit(model, train, valid, CFG, seed=0, device=torch.device("cpu"))
    assert result.best_valid_loss < 0.5 * before
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    model.eval()
    assert auc(model(valid["user"], valid["item"])["click"], valid["click"]) > 0.95


def test_early_stopping_keeps_the_best_epoch() -> None:
    model = tiny_model()
    train, valid = learnable_rows(300, seed=1), learnable_rows(100, seed=2)
    cfg = CFG.model_copy(update={"epochs": 40, "patience": 1, "lr": 0.1})
    result = fit(model, train, valid, cfg, seed=0, device=torch.device("cpu"))
    best = min(h["valid_loss"] for h in result.history)
    assert result.best_valid_loss == best
    assert eval_loss(model, TensorBatches(valid, 256), cfg.task_weights) == pytest.approx(best)


def test_a_monitor_replaces_the_validation_loss_for_early_stopping() -> None:
    model = tiny_model()
    train, valid = learnable_rows(300, seed=1), learnable_rows(100, seed=2)
    cfg = CFG.model_copy(update={"epochs": 6, "patience": 1})
    scores = iter([0.1, 0.3, 0.9, 0.2, 0.4, 0.5, 0.6])  # before training, then per epoch
    result = fit(model, train, valid, cfg, seed=0, device=CPU, monitor=scripted(scores))
    # Epoch 2 scored best; epochs 3 and 4 did not improve (patience 1): stopped after epoch 4.
    assert (result.best_epoch, result.epochs_run) == (2, 4)
    assert [h["valid_score"] for h in result.history] == [0.3, 0.9, 0.2, 0.4]
    assert result.best_valid_loss == result.history[1]["valid_loss"]


def scripted(scores: list[float], floor: float = -math.inf) -> Monitor:
    """A monitor reading ``scores`` in turn (before training, then one per epoch)."""
    values = iter(scores)
    return Monitor(lambda _: next(values), floor)


def stopped(scores: list[float], floor: float = -math.inf, **cfg: object) -> tuple[int, int]:
    """(best epoch, epochs run) of a short fit whose valid score follows ``scores``."""
    train, valid = learnable_rows(100, seed=1), learnable_rows(50, seed=2)
    settings = CFG.model_copy(update={"epochs": len(scores) - 1, "patience": 1} | cfg)
    result = fit(
        tiny_model(), train, valid, settings, seed=0, device=CPU, monitor=scripted(scores, floor)
    )
    return result.best_epoch, result.epochs_run


# A ranking model's valid NDCG: popularity's level (0.3) within an epoch, a plateau there, then
# what it learns about each user.
PLATEAU = [0.05, 0.3, 0.3, 0.29, 0.3, 0.3, 0.42, 0.45, 0.44, 0.44, 0.43]


def test_no_early_stop_on_the_popularity_plateau() -> None:
    assert stopped(PLATEAU) == (1, 3)  # patience alone ends the run on the plateau
    # With popularity's score as the floor it runs on until it has beaten it, then stops.
    assert stopped(PLATEAU, floor=0.3) == (7, 9)


def test_warm_up_epochs_come_before_early_stopping() -> None:
    assert stopped(PLATEAU, warmup_epochs=5) == (7, 9)


def test_gains_below_min_gain_do_not_reset_the_patience() -> None:
    creeping = [0.1, 0.3, 0.301, 0.302, 0.303, 0.304, 0.305]
    assert stopped(creeping) == (6, 6)
    # The best epoch is still kept; the tiny gains only stop counting as progress.
    assert stopped(creeping, min_gain=0.01) == (3, 3)


def test_a_spent_time_budget_stops_training_and_keeps_the_best_epoch() -> None:
    model = tiny_model()
    train, valid = learnable_rows(100, seed=1), learnable_rows(50, seed=2)
    cfg = CFG.model_copy(update={"epochs": 10, "patience": 10, "max_minutes": 2.5})
    minutes = itertools.count(0.0, 60.0)  # a fake clock: a minute passes between readings
    result = fit(
        model,
        train,
        valid,
        cfg,
        seed=0,
        device=CPU,
        monitor=scripted([0.1, 0.5, 0.9, 0.3, 0.95]),
        clock=lambda: next(minutes),
    )
    # Read at the start (0 s) and after each epoch: 180 s >= 150 s after epoch 3.
    assert (result.best_epoch, result.epochs_run) == (2, 3)
    assert result.best_valid_loss == result.history[1]["valid_loss"]
    assert eval_loss(model, TensorBatches(valid, 256), cfg.task_weights) == pytest.approx(
        result.history[1]["valid_loss"]
    )


def test_training_is_deterministic_for_a_seed() -> None:
    train, valid = learnable_rows(500, seed=1), learnable_rows(100, seed=2)
    cfg = CFG.model_copy(update={"epochs": 3})
    first, second = tiny_model(), tiny_model()
    fit(first, train, valid, cfg, seed=5, device=torch.device("cpu"))
    fit(second, train, valid, cfg, seed=5, device=torch.device("cpu"))
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_evaluate_model_reports_every_metric() -> None:
    model = tiny_model()
    rows = learnable_rows(200)
    task = RankingTask(
        users=torch.tensor([1, 2]),
        candidates=torch.arange(1, 11),
        seen=(torch.tensor([1]), torch.tensor([0])),
        relevant=(torch.tensor([1, 2]), torch.tensor([3, 4])),
    )
    metrics = evaluate_model(model, rows, task, k=5, block=1)
    assert set(metrics) == {
        "click_auc",
        "like_auc",
        "rating_rmse",
        "rating_mae",
        "ndcg@5",
        "hr@5",
        "recall@5",
        "mrr",
    }
    assert all(0.0 <= metrics[m] <= 1.0 for m in ("click_auc", "ndcg@5", "hr@5", "mrr"))
    lean = tiny_model(score_tasks=("click",))
    assert "like_auc" not in evaluate_model(lean, rows, task, k=5, block=1)
    assert "rating_rmse" not in evaluate_model(lean, rows, task, k=5, block=1)


def test_bf16_autocast_trains() -> None:
    model = tiny_model()
    cfg = CFG.model_copy(update={"amp": "bf16", "epochs": 10})
    result = fit(
        model, learnable_rows(600), learnable_rows(200, seed=1), cfg, 0, torch.device("cpu")
    )
    losses = [h["valid_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16
    assert autocast_dtype("off", torch.device("cuda")) is None


def test_compiled_training_matches_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    # train.compile: the same weights after a few epochs as eager training (same seed, no
    # dropout), so the flag changes speed, not results. Dynamo + AOT autograd without
    # Inductor's C++ build: the same graph capture in seconds instead of a minute.
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m: compile_(m, backend="aot_eager"))
    train, valid = learnable_rows(256, seed=1), learnable_rows(64, seed=2)
    cfg = CFG.model_copy(update={"epochs": 2, "batch_size": 128})
    eager, compiled = tiny_model(), tiny_model()
    fit(eager, train, valid, cfg, seed=3, device=torch.device("cpu"))
    result = fit(
        compiled, train, valid, cfg.model_copy(update={"compile": True}), 3, torch.device("cpu")
    )
    assert result.epochs_run == 2
    for a, b in zip(eager.state_dict().values(), compiled.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
