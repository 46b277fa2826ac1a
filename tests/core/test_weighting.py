import math

import pytest
import torch

from mtrec.core.metrics import auc
from mtrec.core.trainer import fit
from mtrec.core.weighting import (
    DynamicWeightAverage,
    GradNorm,
    StaticWeights,
    UncertaintyWeights,
    make_weighting,
)

from .helpers import SYNTHETIC_TRAINING, learnable_rows, tiny_model

WEIGHTS = {"click": 1.0, "rating": 0.5, "category": 0.0}


def test_static_is_the_weighted_sum_and_skips_zero_weights() -> None:
    losses = {
        "click": torch.tensor(2.0),
        "rating": torch.tensor(4.0),
        "category": torch.tensor(9.0),
    }
    assert StaticWeights(WEIGHTS).combine(losses).item() == pytest.approx(4.0)


def test_uncertainty_starts_static_and_downweights_the_noisier_task() -> None:
    weighting = UncertaintyWeights(WEIGHTS)
    losses = {"click": torch.tensor(0.5), "rating": torch.tensor(5.0)}
    assert weighting.combine(losses).item() == pytest.approx(1.0 * 0.5 + 0.5 * 5.0)
    optimizer = torch.optim.SGD(weighting.parameters(), lr=0.1)
    for _ in range(20):
        optimizer.zero_grad()
        weighting.combine(losses).backward()
        optimizer.step()
    log_vars = dict(zip(weighting.weights, weighting.log_vars.tolist(), strict=True))
    assert log_vars["rating"] > 0 > log_vars["click"]  # precision falls for the larger loss
    assert weighting.multipliers()["rating"] < 0.5 and weighting.multipliers()["click"] > 1.0


def test_dwa_favours_the_task_whose_loss_stopped_falling() -> None:
    weighting = DynamicWeightAverage(WEIGHTS, temperature=1.0)
    assert weighting.multipliers() == {"click": 1.0, "rating": 0.5}
    weighting.end_epoch({"click": 1.0, "rating": 1.0})
    weighting.end_epoch({"click": 0.5, "rating": 1.0})  # click halved, rating flat
    assert sum(weighting.dynamic.values()) == pytest.approx(2.0)
    assert weighting.dynamic["rating"] > 1.0 > weighting.dynamic["click"]


@pytest.mark.parametrize("kind", ["static", "uncertainty", "dwa"])
def test_every_weighting_trains_a_model(kind) -> None:
    model = tiny_model()
    train, valid = learnable_rows(2000, seed=1), learnable_rows(400, seed=2)
    cfg = SYNTHETIC_TRAINING.model_copy(update={"weighting": kind, "epochs": 15})
    result = fit(model, train, valid, cfg, seed=0, device=torch.device("cpu"))
    model.eval()
    assert auc(model(valid["user"], valid["item"])["click"], valid["click"]) > 0.9
    assert {"weight.click", "weight.like"} <= set(result.history[-1])


def test_unknown_weighting_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown task weighting 'gradnrom'"):
        make_weighting("gradnrom", WEIGHTS, 2.0)


def gradnorm_steps(steps: int, alpha: float = 1.5) -> GradNorm:
    """Train a shared layer under two regression tasks whose losses differ in scale by 100x,
    with GradNorm; returns the weighting after ``steps``."""
    torch.manual_seed(0)
    shared = torch.nn.Linear(4, 8)
    heads = torch.nn.ModuleDict({"click": torch.nn.Linear(8, 1), "rating": torch.nn.Linear(8, 1)})
    weighting = make_weighting(
        "gradnorm", {"click": 1.0, "rating": 1.0}, 2.0, alpha, lambda: shared.weight
    )
    params = [*shared.parameters(), *heads.parameters(), *weighting.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.01)
    x = torch.randn(256, 4)
    targets = {"click": x.sum(1), "rating": 10.0 * x[:, 0]}  # rating's loss is far larger
    for _ in range(steps):
        hidden = shared(x).relu()
        losses = {t: ((heads[t](hidden).squeeze(1) - y) ** 2).mean() for t, y in targets.items()}
        optimizer.zero_grad()
        weighting.combine(losses).backward()
        optimizer.step()
    return weighting


def test_gradnorm_moves_task_gradient_norms_towards_their_targets() -> None:
    def gap(weighting: GradNorm) -> float:
        """How far the gradient norms' ratio is from the targets' ratio (log scale)."""
        ratio = weighting.norms / weighting.targets
        return abs(math.log(ratio[0] / ratio[1]))

    # alpha 0: the target is the same norm for both tasks (their static weights are equal).
    first, trained = gradnorm_steps(1, alpha=0.0), gradnorm_steps(300, alpha=0.0)
    assert gap(first) > 1.0  # rating's gradient starts several times click's
    assert gap(trained) < 0.25 * gap(first)
    # It got there by scaling rating down against click (the scales sum to the task count).
    scales = dict(zip(trained.weights, trained.scales.tolist(), strict=True))
    assert scales["rating"] < 0.5 < 1.5 < scales["click"]
    assert sum(scales.values()) == pytest.approx(2.0, abs=0.05)


def test_gradnorm_trains_a_model_and_leaves_tasks_off_the_shared_layer_static() -> None:
    model = tiny_model()
    train, valid = learnable_rows(2000, seed=1), learnable_rows(400, seed=2)
    cfg = SYNTHETIC_TRAINING.model_copy(update={"weighting": "gradnorm", "epochs": 15})
    result = fit(model, train, valid, cfg, seed=0, device=torch.device("cpu"))
    model.eval()
    assert auc(model(valid["user"], valid["item"])["click"], valid["click"]) > 0.9
    # The category head reads the text encoder alone, below the shared bottom.
    assert result.history[-1]["weight.category"] == cfg.task_weights["category"]
    assert result.history[-1]["weight.click"] != cfg.task_weights["click"]


def test_gradnorm_needs_the_shared_layer() -> None:
    with pytest.raises(ValueError, match="pass shared"):
        make_weighting("gradnorm", WEIGHTS, 2.0)
