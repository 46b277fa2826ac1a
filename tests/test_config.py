from pathlib import Path

import pytest

from mtrec.config import deep_merge, load_params, parse_params
from mtrec.errors import ConfigError

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_project_params_validate() -> None:
    params = load_params(PARAMS)
    assert params.target.genres == ["Animation", "Children"]
    assert params.registry.strategy in params.transfer.strategies


def test_unknown_key_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"transfer\.train\.epoch"):
        load_params(PARAMS, {"transfer": {"train": {"epoch": 3}}})


def test_out_of_range_value_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"target\.train_fraction"):
        load_params(PARAMS, {"target": {"train_fraction": 0}})


def test_unknown_task_weight_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown task"):
        load_params(PARAMS, {"pretrain": {"task_weights": {"clik": 1.0}}})


def test_registered_strategy_must_be_trained() -> None:
    with pytest.raises(ConfigError, match=r"registry\.strategy"):
        load_params(
            PARAMS,
            {"transfer": {"strategies": ["scratch"]}, "gates": {"require_transfer_gain": False}},
        )


def test_overrides_merge_nested_keys_only() -> None:
    merged = deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 5}})
    assert merged == {"a": {"b": 5, "c": 2}, "d": 3}


def test_round_trip_keeps_alias_names() -> None:
    params = load_params(PARAMS)
    assert "validate" in params.to_dict()
    assert parse_params(params.to_dict()) == params
