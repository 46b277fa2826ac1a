"""The cold-item tables of evaluate: which test rows count and what they are ranked against."""

import numpy as np
import pandas as pd

from mtrec.stages.evaluate import COLD_ITEM, COLD_ITEM_FULL, cold_item_tasks
from mtrec.stages.modeling import ProcessedData


def test_cold_items_are_test_items_without_training_interactions() -> None:
    rows = pd.DataFrame(
        {  # items 1, 2 trained; 3 only in valid; 4, 5 only in test; 6 never seen
            "user_idx": [1, 1, 2, 1, 1, 2, 2],
            "item_idx": [1, 2, 1, 3, 4, 5, 2],
            "split": ["train", "train", "train", "valid", "test", "test", "test"],
            "domain": "target",
            "click": 1,
        }
    )
    data = ProcessedData(rows, pd.DataFrame(), pd.DataFrame(), {})
    seen = rows[rows["split"] != "test"]
    relevant = rows[rows["split"] == "test"]
    tasks = cold_item_tasks(data, seen, relevant, np.arange(1, 7))
    pool, full = tasks[COLD_ITEM], tasks[COLD_ITEM_FULL]
    assert pool.candidates.tolist() == [3, 4, 5, 6]  # the untrained items only
    assert full.candidates.tolist() == [1, 2, 3, 4, 5, 6]
    # Relevant: (1, 4) and (2, 5); user 2's warm test item 2 is masked, not a miss.
    assert sorted(zip(*(t.tolist() for t in full.relevant), strict=True)) == [(1, 3), (2, 4)]
    assert (2, 1) in set(zip(*(t.tolist() for t in full.seen), strict=True))
    # Among cold items, user 1's valid-only item 3 is masked as seen.
    assert list(zip(*(t.tolist() for t in pool.seen), strict=True)) == [(1, 0)]


def test_no_cold_test_items_no_tables() -> None:
    rows = pd.DataFrame(
        {"user_idx": [1, 1], "item_idx": [1, 1], "split": ["train", "test"], "domain": "target"}
    ).assign(click=1)
    data = ProcessedData(rows, pd.DataFrame(), pd.DataFrame(), {})
    assert cold_item_tasks(data, rows[:1], rows[1:], np.array([1, 2])) == {}
