"""The Amazon (DisenCDR) adapter and the ``dataset`` protocol on the bundled sport <-> phone
pair: counts from data/amazon-disencdr/SOURCE.md, the release's own test lines, and the fixed
candidates mapped onto model indices."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from mtrec.config import PARAMS_FILE, load_params, read_preset
from mtrec.data.amazon import load_amazon
from mtrec.data.preprocess import preprocess
from mtrec.errors import DataSourceError

from ..conftest import PROJECT_ROOT

PRESET = "amazon-sport-phone"
AMAZON = PROJECT_ROOT / "data" / "amazon-disencdr"


@pytest.fixture(scope="module")
def params():
    return load_params(PROJECT_ROOT / PARAMS_FILE, read_preset(PROJECT_ROOT, PRESET))


@pytest.fixture(scope="module")
def tables(params):
    return load_amazon(params.data.model_copy(update={"raw_dir": str(AMAZON)}))


@pytest.fixture(scope="module")
def processed(params, tables):
    return preprocess(tables, params.target, params.preprocess, params.protocol)


def test_counts_match_the_release(tables) -> None:
    inter = tables.interactions
    rows = inter.groupby(["domain", "split"]).size().to_dict()
    # SOURCE.md: sport_phone 50,558 train / 3,698 test, phone_sport 42,446 / 3,999; 4,998 users.
    assert rows == {
        ("sport", "train"): 50_558,
        ("sport", "test"): 3_698,
        ("phone", "train"): 42_446,
        ("phone", "test"): 3_999,
    }
    assert tables.users["user"].nunique() == 4_998
    assert tables.items.groupby("domain").size().to_dict() == {"sport": 20_845, "phone": 13_655}
    assert (inter["rating"] == 1).all() and (inter["click"] == 1).all()


def test_item_ids_are_disjoint_across_domains(tables) -> None:
    by_domain = tables.items.groupby("domain")["item"].agg(set)
    assert not by_domain["sport"] & by_domain["phone"]
    # raw ids are kept: phone item 0 of the release is the first id past sport's largest
    phone = tables.items[tables.items["domain"] == "phone"]
    assert (phone["item"] - phone["raw_item"]).nunique() == 1


def test_candidates_are_the_fixed_lines_of_each_domain(tables) -> None:
    cands = tables.candidates
    assert cands.groupby("domain").size().to_dict() == {"phone": 3_999, "sport": 3_698}
    assert {len(n) for n in cands["negatives"]} == {999}
    domain_of = tables.items.set_index("item")["domain"]
    for domain, lines in cands.groupby("domain"):
        items = np.concatenate([lines["item"].to_numpy(), *lines["negatives"]])
        assert (domain_of.reindex(items) == domain).all()


def test_dataset_protocol_keeps_the_release_test_lines(processed, tables) -> None:
    inter = processed.interactions
    pos = inter[inter["click"] == 1]
    test = pos[pos["split"] == "test"].groupby("domain").size().to_dict()
    assert test == {"target": 3_999, "source": 3_698}  # phone is the target
    train_like = pos[pos["split"].isin(["train", "valid"])].groupby("domain").size()
    assert train_like.to_dict() == {"target": 42_446, "source": 50_558}
    valid_share = (pos["split"] == "valid").sum() / len(pos[pos["split"] != "test"])
    assert 0.03 < valid_share < 0.07  # preset: valid_fraction 0.05 of the train rows
    items = processed.items.set_index("item_idx")
    phone = set(tables.items.loc[tables.items["domain"] == "phone", "item"])
    assert set(items.loc[items["domain"] == "target", "item"]) == phone


def test_candidates_map_onto_target_test_rows(processed) -> None:
    cands, inter = processed.candidates, processed.interactions
    assert len(cands) == 3_999 and processed.meta["cleaning"]["candidates_dropped"] == 0
    test = inter[(inter["click"] == 1) & (inter["split"] == "test") & (inter["domain"] == "target")]
    assert set(zip(cands["user_idx"], cands["item_idx"], strict=True)) == set(
        zip(test["user_idx"], test["item_idx"], strict=True)
    )
    target_items = set(processed.items.loc[processed.items["domain"] == "target", "item_idx"])
    negatives = np.concatenate(cands["negatives"].to_numpy())
    assert set(negatives.tolist()) <= target_items


def test_a_pair_not_in_the_release_is_a_clear_error(params, tmp_path) -> None:
    shutil.copytree(AMAZON / "sport_phone", tmp_path / "sport_phone")
    cfg = params.data.model_copy(update={"raw_dir": str(tmp_path)})
    with pytest.raises(DataSourceError, match="phone_sport: not found"):
        load_amazon(cfg)


def test_a_misnamed_candidates_file_is_an_error_naming_the_right_name(params, tmp_path) -> None:
    for pair in ("sport_phone", "phone_sport"):
        shutil.copytree(AMAZON / pair, tmp_path / pair)
    (tmp_path / "candidates").mkdir()
    shutil.copy2(AMAZON / "candidates" / "README.md", tmp_path / "candidates")  # not data: stays
    source = AMAZON / "candidates" / "phone_sport.candidates_seed2026.tsv.gz"
    shutil.copy2(source, tmp_path / "candidates" / "phone-sport.candidates.tsv.gz")
    cfg = params.data.model_copy(update={"raw_dir": str(tmp_path)})
    with pytest.raises(DataSourceError, match=r"phone-sport\.candidates\.tsv\.gz not read") as err:
        load_amazon(cfg)
    assert "phone_sport.candidates*.tsv.gz" in str(err.value)
    (tmp_path / "candidates" / "phone-sport.candidates.tsv.gz").rename(
        tmp_path / "candidates" / source.name
    )
    assert load_amazon(cfg).candidates is not None
