import numpy as np
import pandas as pd
import pytest

from mtrec.data.features import item_features, normalise, tokenize, user_features

ITEMS = pd.DataFrame(
    {"item_idx": [1, 2, 3], "genres": [[0], [0, 1], [1]], "year": [1990.0, 2000.0, 2010.0]}
)
TRAIN = pd.DataFrame(
    {
        "user_idx": [1, 1, 2],
        "item_idx": [1, 2, 2],
        "timestamp": [0, 0, int(40.5 * 365.25 * 24 * 3600)],
    }
)  # mid-2010


def test_user_features_activity_and_genre_profile() -> None:
    feats = user_features(TRAIN, ITEMS, n_genres=2, n_users=4)
    assert feats["activity"].tolist() == pytest.approx(np.log1p([0, 2, 1, 0]).tolist())
    profile = np.stack(feats["genre_profile"])
    np.testing.assert_allclose(profile[1], [2 / 3, 1 / 3])  # genres 0, 0+1
    np.testing.assert_allclose(profile[2], [0.5, 0.5])
    np.testing.assert_allclose(profile[3], [0.0, 0.0])  # no history: zeros


def test_item_features_popularity_and_age() -> None:
    feats = item_features(TRAIN, ITEMS)
    assert feats["popularity"].tolist() == pytest.approx(np.log1p([1, 2, 0]).tolist())
    assert feats["age"].tolist() == pytest.approx([20.5, 10.5, 0.5], abs=0.01)


@pytest.mark.parametrize("method", ["zscore", "minmax"])
def test_normalisation_uses_only_the_fit_rows(method) -> None:
    values = pd.DataFrame({"x": [0.0, 10.0, 100.0]})
    scaled, stats = normalise(values, values.iloc[:2], method)
    if method == "zscore":
        assert scaled["x"].iloc[:2].mean() == pytest.approx(0.0)
        assert stats["mean"]["x"] == 5.0
    else:
        assert scaled["x"].tolist() == pytest.approx([0.0, 1.0, 10.0])
    assert scaled["x"].iloc[2] > 1.0  # a value outside the training range stays outside


def test_tokenize_keeps_frequent_words_and_pads_with_zero() -> None:
    ids, n = tokenize(pd.Series(["Toy Story", "Toy Soldiers", None]), max_tokens=1, min_count=2)
    assert n == 2  # padding + "toy"
    assert ids == [[1], [1], []]
