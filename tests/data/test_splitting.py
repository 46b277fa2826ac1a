"""Split rules: RecBole-style random split, cold users, user histories."""

import numpy as np
import pandas as pd

from mtrec.data.splitting import TARGET, TEST, TRAIN, VALID, hold_out_cold_users, random_split
from mtrec.data.tensors import user_history


def _recbole_counts(total: int, ratios: list[float]) -> list[int]:
    """RecBole 1.2's ``Dataset.split_by_ratio`` counting, transcribed as a plain loop."""
    counts = [int(r * total) for r in ratios]
    counts[0] = total - sum(counts[1:])
    for i in range(1, len(ratios)):
        if counts[0] <= 1:
            break
        if 0 < ratios[-i] * total < 1:
            counts[-i] += 1
            counts[0] -= 1
    return counts


def test_random_split_counts_each_user_as_recbole_does() -> None:
    sizes = [1, 2, 3, 5, 9, 10, 11, 25, 101]
    frame = pd.DataFrame(
        {
            "user_idx": np.repeat(np.arange(1, len(sizes) + 1), sizes),
            "item_idx": np.concatenate([np.arange(n) for n in sizes]),
        }
    )
    split = random_split(frame, (0.8, 0.1, 0.1), np.random.default_rng(0))
    for user, size in enumerate(sizes, start=1):
        got = split[frame["user_idx"] == user].value_counts()
        want = _recbole_counts(size, [0.8, 0.1, 0.1])
        assert [got.get(s, 0) for s in (TRAIN, VALID, TEST)] == want, size


def test_random_split_is_random_within_users_and_seeded() -> None:
    frame = pd.DataFrame({"user_idx": np.ones(100, dtype=int), "item_idx": np.arange(100)})
    first = random_split(frame, (0.8, 0.1, 0.1), np.random.default_rng(0))
    again = random_split(frame, (0.8, 0.1, 0.1), np.random.default_rng(0))
    other = random_split(frame, (0.8, 0.1, 0.1), np.random.default_rng(1))
    assert first.equals(again) and not first.equals(other)
    assert first.value_counts().to_dict() == {TRAIN: 80, VALID: 10, TEST: 10}
    assert frame.loc[first == TEST, "item_idx"].tolist() != list(range(90, 100))


def test_cold_users_lose_their_target_history_and_keep_the_rest() -> None:
    users = np.repeat(np.arange(1, 21), 6)
    frame = pd.DataFrame(
        {
            "user_idx": users,
            "domain": np.tile(["target"] * 4 + ["source"] * 2, 20),
            "split": np.tile([TRAIN, VALID, TEST, TRAIN, TRAIN, TEST], 20),
        }
    )
    kept = hold_out_cold_users(frame, 0.25, np.random.default_rng(0))
    history = kept[(kept["domain"] == TARGET) & kept["split"].isin([TRAIN, VALID])]
    cold = sorted(set(range(1, 21)) - set(history["user_idx"]))
    assert len(cold) == 5
    for user in cold:
        rows = kept[kept["user_idx"] == user]
        assert list(rows["split"]) == [TEST, TRAIN, TEST]  # target test + all source rows
    assert len(kept) == len(frame) - 5 * 3


def test_user_history_is_the_latest_items_oldest_first_left_padded() -> None:
    positives = pd.DataFrame(
        {
            "user_idx": [1, 1, 1, 1, 2],
            "item_idx": [10, 11, 12, 13, 20],
            "timestamp": [4, 1, 3, 2, 9],
        }
    )
    history = user_history(positives, n_users=4, length=3)
    assert history.tolist() == [[0, 0, 0], [13, 12, 10], [0, 0, 20], [0, 0, 0]]


def test_cold_fraction_zero_keeps_everything() -> None:
    frame = pd.DataFrame({"user_idx": [1, 1], "domain": [TARGET] * 2, "split": [TRAIN, TEST]})
    assert len(hold_out_cold_users(frame, 0.0, np.random.default_rng(0))) == 2
