import numpy as np
import pandas as pd
import pytest

from mtrec.config import OutlierConfig
from mtrec.data.cleaning import dedupe, drop_outlier_users, fill_years, k_core

REPEATS = pd.DataFrame(
    {
        "user": [1, 1, 1, 2],
        "item": [5, 5, 5, 5],
        "rating": [1.0, 2.0, 4.5, 3.0],
        "timestamp": [30, 10, 20, 5],
    }
)


@pytest.mark.parametrize(
    ("policy", "rating", "timestamp"), [("last", 1.0, 30), ("first", 2.0, 10), ("mean", 2.5, 30)]
)
def test_dedupe_policies(policy, rating, timestamp) -> None:
    kept, merged = dedupe(REPEATS, policy)
    assert merged == 2
    row = kept[kept["user"] == 1].iloc[0]
    assert (row["rating"], row["timestamp"]) == (rating, timestamp)
    assert len(kept) == 2


def _activity_frame() -> pd.DataFrame:
    # 30 ordinary users with 5-40 interactions, one bot with 5000.
    counts = [*range(5, 35), 5000]
    return pd.DataFrame(
        {
            "user": np.repeat(np.arange(len(counts)), counts),
            "item": np.concatenate([np.arange(c) for c in counts]),
        }
    )


@pytest.mark.parametrize("rule", ["iqr", "zscore"])
def test_outlier_users_are_dropped_and_counted(rule) -> None:
    frame = _activity_frame()
    kept, dropped = drop_outlier_users(frame, OutlierConfig(rule=rule, threshold=2.5))
    assert dropped == 1
    assert 30 not in set(kept["user"])


def test_no_outlier_rule_keeps_everyone() -> None:
    frame = _activity_frame()
    kept, dropped = drop_outlier_users(frame, OutlierConfig(rule="none"))
    assert dropped == 0 and len(kept) == len(frame)


def test_k_core_iterates_until_stable() -> None:
    # Dropping item 3 (one interaction) leaves user 2 with one interaction, so it goes too.
    frame = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3], "item": [1, 2, 1, 3, 1, 2]})
    kept, dropped = k_core(frame, 2)
    assert set(kept["user"]) == {1, 3} and set(kept["item"]) == {1, 2}
    assert dropped == 2
    assert k_core(frame, 0) == (frame, 0)


def test_missing_years_are_imputed_or_dropped() -> None:
    items = pd.DataFrame({"item": [1, 2, 3], "year": [1990.0, None, 2000.0]})
    imputed, n = fill_years(items, "impute")
    assert n == 1 and imputed["year"].tolist() == [1990.0, 1995.0, 2000.0]
    dropped, n = fill_years(items, "drop")
    assert n == 1 and dropped["item"].tolist() == [1, 3]
