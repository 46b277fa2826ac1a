from pathlib import Path

import pytest
import yaml

from mtrec.__main__ import main
from mtrec.config import deep_merge, load_params, parse_params, preset_names, read_preset
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


@pytest.mark.parametrize("name", preset_names(PARAMS.parent))
def test_every_shipped_preset_validates(name) -> None:
    assert load_params(PARAMS, read_preset(PARAMS.parent, name)).data.dataset != "ml-latest-small"


def test_preset_command_rewrites_the_params_file(tmp_path) -> None:
    (tmp_path / "params.yaml").write_text(PARAMS.read_text())
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "amz.yaml").write_text(
        "data: {dataset: amazon-disencdr, domains: [sport, phone]}\ntarget: {domain: phone}\n"
    )
    assert main(["preset", "amz", "--params", str(tmp_path / "params.yaml")]) == 0
    params = load_params(tmp_path / "params.yaml")
    assert (params.data.dataset, params.target.domain) == ("amazon-disencdr", "phone")
    assert params.transfer.strategies == load_params(PARAMS).transfer.strategies  # kept
    assert main(["preset", "nope", "--params", str(tmp_path / "params.yaml")]) == 1


def test_lm_fine_tuning_is_off_by_default_and_needs_the_lm_encoder() -> None:
    params = load_params(PARAMS)
    assert params.model.lm_finetune_layers == 0 and params.embed.max_tokens == 32
    lm = {"item_encoder": "lm", "lm_finetune_layers": 6}
    assert load_params(PARAMS, {"model": lm}).model.lm_finetune_layers == 6
    with pytest.raises(ConfigError, match=r"set model\.item_encoder lm"):
        load_params(PARAMS, {"model": {"lm_finetune_layers": 1}})


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"model": {"item_encoder": "lm", "lm_finetune_layers": 7}}, r"model\.lm_finetune_layers"),
        ({"model": {"item_encoder": "lm", "lm_finetune_layers": -1}}, r"model\.lm_finetune_layers"),
        ({"embed": {"max_tokens": 1}}, r"embed\.max_tokens"),
        ({"embed": {"max_tokens": 257}}, r"embed\.max_tokens"),
    ],
)
def test_lm_fine_tuning_values_out_of_range_are_rejected(override, key) -> None:
    with pytest.raises(ConfigError, match=key):
        load_params(PARAMS, override)


def test_a_single_domain_params_file_names_every_setting_at_once() -> None:
    raw = deep_merge(yaml.safe_load(PARAMS.read_text()), {"protocol": {"name": "predefined"}})
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    for key in ("transfer.strategies", "registry.strategy", "gates.require_transfer_gain"):
        assert key in str(err.value)


def test_a_single_domain_override_implies_scratch_only() -> None:
    params = load_params(PARAMS, {"protocol": {"name": "recbole-general"}})
    assert params.transfer.strategies == ["scratch"] and params.registry.strategy == "scratch"
    assert not params.gates.require_transfer_gain
    # A value chosen on purpose is kept, and fails when it contradicts the protocol.
    chosen = {"protocol": {"name": "recbole-general"}, "registry": {"strategy": "frozen"}}
    with pytest.raises(ConfigError, match=r"registry\.strategy frozen \(must be scratch\)") as err:
        load_params(PARAMS, chosen)
    assert "transfer.strategies" not in str(err.value)


def test_a_single_domain_preset_writes_what_it_implies(tmp_path) -> None:
    (tmp_path / "params.yaml").write_text(PARAMS.read_text())
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text("protocol: {name: recbole-general}\n")
    assert main(["preset", "mine", "--params", str(tmp_path / "params.yaml")]) == 0
    written = yaml.safe_load((tmp_path / "params.yaml").read_text())  # what dvc.yaml reads
    assert written["transfer"]["strategies"] == ["scratch"]
    assert written["registry"]["strategy"] == "scratch"
