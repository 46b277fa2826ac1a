"""Which strategies the transfer curve's extra points retrain."""

from __future__ import annotations

from pathlib import Path

from mtrec.config import load_params
from mtrec.stages.curve import curve_strategies

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_curve_strategies_are_the_transferred_ones_it_names_in_their_order() -> None:
    transfer = {"strategies": ["scratch", "finetune", "joint"]}
    every = load_params(PARAMS, {"transfer": transfer, "curve": {"strategies": None}})
    assert curve_strategies(every) == ["scratch", "finetune", "joint"]
    # Named but not transferred (l2sp) is not trained: the operator's strategy choice wins.
    some = load_params(
        PARAMS, {"transfer": transfer, "curve": {"strategies": ["joint", "l2sp", "scratch"]}}
    )
    assert curve_strategies(some) == ["scratch", "joint"]
