import pytest
import torch

from mtrec.core.metrics import auc
from mtrec.core.trainer import fit
from mtrec.core.weighting import (
    DynamicWeightAverage,
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
