import numpy as np
import pandas as pd
import pytest

from mtrec.config import PreprocessConfig, ProtocolConfig, RecboleProtocol, TargetConfig
from mtrec.data.preprocess import preprocess
from mtrec.errors import DataValidationError

from ..conftest import PROJECT_ROOT

TARGET = TargetConfig(genres=["Animation", "Children"], train_fraction=1.0, cold_user_fraction=0)


@pytest.fixture(scope="module")
def full(canonical):
    return preprocess(canonical, TARGET, PreprocessConfig())


def test_domains_split_by_target_genres(full, canonical) -> None:
    cats = canonical.items.set_index("item")["categories"]
    items = full.items.set_index("item")
    is_target = items.index.map(lambda i: bool({"Animation", "Children"} & set(cats[i])))
    assert ((items["domain"] == "target") == is_target).all()


def test_split_is_temporal_per_user_and_domain(full) -> None:
    pos = full.interactions[full.interactions["click"] == 1]
    bounds = pos.groupby(["user_idx", "domain", "split"])["timestamp"].agg(["min", "max"]).unstack()
    has_test = bounds["min"]["test"].notna()
    assert (bounds["max"]["train"][has_test] <= bounds["min"]["test"][has_test]).all()
    assert (bounds["max"]["valid"][has_test] <= bounds["min"]["test"][has_test]).all()


def test_negatives_are_unobserved_items_of_the_same_domain(full) -> None:
    inter, items = full.interactions, full.items.set_index("item_idx")
    neg, pos = inter[inter["click"] == 0], inter[inter["click"] == 1]
    assert len(neg) == 4 * len(pos)
    assert not set(zip(neg["user_idx"], neg["item_idx"], strict=True)) & set(
        zip(pos["user_idx"], pos["item_idx"], strict=True)
    )
    assert (items.loc[neg["item_idx"], "domain"].to_numpy() == neg["domain"].to_numpy()).all()
    assert neg["rating"].isna().all() and (neg["like"] == 0).all()


def test_target_thinning_keeps_the_requested_fraction(full, canonical) -> None:
    half = preprocess(
        canonical, TARGET.model_copy(update={"train_fraction": 0.5}), PreprocessConfig()
    )

    def target_train(p):
        i = p.interactions
        return ((i["domain"] == "target") & (i["split"] == "train") & (i["click"] == 1)).sum()

    assert 0.45 < target_train(half) / target_train(full) < 0.55
    untouched = full.interactions[full.interactions["domain"] == "source"]
    assert len(half.interactions[half.interactions["domain"] == "source"]) == len(untouched)


def test_ids_are_dense_with_zero_reserved(full) -> None:
    assert full.items["item_idx"].min() == 1
    assert full.meta["n_items"] == len(full.items) + 1
    assert np.array_equal(np.sort(full.users["user_idx"]), np.arange(1, len(full.users) + 1))


def test_unknown_target_genre_is_a_clear_error(canonical) -> None:
    with pytest.raises(DataValidationError, match="match no item"):
        preprocess(canonical, TargetConfig(genres=["Cartoons"]), PreprocessConfig())


def test_every_cleaning_rule_is_counted(full) -> None:
    assert set(full.meta["cleaning"]) == {
        "merged_duplicates",
        "items_missing_year",
        "outlier_users",
        "k_core_dropped_rows",
        "inactive_users",
    }
    assert full.meta["cleaning"]["items_missing_year"] == 13  # titles without "(year)"


def test_side_features_are_normalised_on_train_rows(full) -> None:
    feats = np.stack(full.items["features"].to_numpy())
    assert feats.shape == (len(full.items), 2)
    assert np.isfinite(feats).all()
    users = np.stack(full.users["features"].to_numpy())
    profile = users[:, 1:]
    np.testing.assert_allclose(profile.sum(1)[profile.sum(1) > 0], 1.0, rtol=1e-6)


def test_cv_folds_cover_only_target_train_and_valid_rows(canonical) -> None:
    out = preprocess(canonical, TARGET, PreprocessConfig(cv_folds=3))
    inter = out.interactions
    pool = (inter["domain"] == "target") & inter["split"].isin(["train", "valid"])
    assert set(inter.loc[pool, "fold"]) == {0, 1, 2}
    assert (inter.loc[~pool, "fold"] == -1).all()


def test_folds_are_off_by_default(full) -> None:
    assert (full.interactions["fold"] == -1).all()


def _positives(processed) -> pd.DataFrame:
    rows = processed.interactions
    return rows[rows["click"] == 1]


def test_predefined_protocol_reproduces_the_given_split_exactly(canonical) -> None:
    split_dir = PROJECT_ROOT / "data" / "ml-latest-small" / "recbole-split-seed2026"
    out = preprocess(
        canonical,
        TARGET,
        PreprocessConfig(),
        ProtocolConfig(name="predefined", split_dir=str(split_dir)),
    )
    pos = (
        _positives(out)
        .merge(out.users[["user", "user_idx"]])
        .merge(out.items[["item", "item_idx"]])
    )
    assert set(out.items["domain"]) == {"target"}
    for split, count in {"train": 49_894, "valid": 5_911, "test": 5_911}.items():
        given = pd.read_csv(split_dir / f"{split}.tsv", sep="\t")
        got = pos.loc[pos["split"] == split, ["user", "item"]]
        assert len(got) == count
        assert set(map(tuple, got.to_numpy())) == set(map(tuple, given.to_numpy()))
    assert pos["user"].nunique() == 609 and pos["item"].nunique() == 7_363


def test_predefined_split_files_must_match_the_data(canonical, tmp_path) -> None:
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.tsv").write_text(
            "user\titem\n1\t1\n" if split == "train" else "user\titem\n"
        )
    (tmp_path / "test.tsv").write_text("user\titem\n1\t999999\n")
    with pytest.raises(DataValidationError, match=r"1 \(user, item\) pairs of the split files"):
        preprocess(
            canonical,
            TARGET,
            PreprocessConfig(),
            ProtocolConfig(name="predefined", split_dir=str(tmp_path)),
        )


def test_recbole_general_thresholds_positives_and_splits_8_1_1(canonical) -> None:
    protocol = ProtocolConfig(
        name="recbole-general", recbole=RecboleProtocol(positive_threshold=3.5, k_core=0)
    )
    out = preprocess(canonical, TARGET, PreprocessConfig(), protocol)
    pos = _positives(out)
    assert len(pos) == 61_716  # ratings >= 3.5, as in RecBole's split of the same data
    assert pos["user_idx"].nunique() == 609
    counts = pos["split"].value_counts()
    assert counts["train"] / len(pos) == pytest.approx(0.8, abs=0.02)
    assert out.meta["cleaning"]["below_positive_threshold"] == 100_836 - 61_716


def test_cold_users_have_target_test_rows_but_no_target_history(canonical) -> None:
    out = preprocess(canonical, TargetConfig(cold_user_fraction=0.2), PreprocessConfig())
    pos = _positives(out)
    target = pos[pos["domain"] == "target"]
    tested = set(target.loc[target["split"] == "test", "user_idx"])
    history = set(target.loc[target["split"] != "test", "user_idx"])
    cold = tested - history
    assert len(cold) == round(0.2 * len(tested))
    assert cold <= set(pos.loc[pos["domain"] == "source", "user_idx"])  # known from the source
