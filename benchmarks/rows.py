"""The benchmark's rows: multi-task click/like rows from the preprocess stage's output, written
once to an .npz that mtrec, the plain-PyTorch floor and the peer (its own venv) all read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtrec.data.splitting import TEST, TRAIN

SOURCE = "source"


def _item_tables(items: pd.DataFrame, n_items: int, max_tokens: int, n_genres: int) -> dict:
    # Token ids per item (0 = padding) and genre ids + 1 per item (0 = padding): the peer feeds
    # them as pooled sequence features, mtrec as its text bag and genre projection.
    tokens = np.zeros((n_items, max_tokens), dtype=np.int64)
    genres = np.zeros((n_items, n_genres), dtype=np.int64)
    for idx, toks, gens in zip(items["item_idx"], items["tokens"], items["genres"], strict=True):
        tokens[idx, : len(toks)] = toks
        gens = sorted(gens)
        genres[idx, : len(gens)] = np.asarray(gens, dtype=np.int64) + 1
    return {"item_tokens": tokens, "item_genre_ids": genres}


def build_rows(
    processed: Path, out: Path, replicate: int = 1, limit: int | None = None
) -> dict[str, int]:
    """Source-domain train and test rows (user, item, click, like) plus the item side tables;
    ``limit`` keeps a seeded random subset of the train rows (a shorter bench), ``replicate``
    > 1 then copies them with new user ids (the scaling runs)."""
    import json

    meta = json.loads((processed / "meta.json").read_text())
    frame = pd.read_parquet(processed / "interactions.parquet")
    items = pd.read_parquet(processed / "items.parquet")
    frame = frame[frame["domain"] == SOURCE]
    arrays: dict[str, np.ndarray] = {}
    n_users = int(meta["n_users"])
    for split in (TRAIN, TEST):
        rows = frame[frame["split"] == split]
        user = rows["user_idx"].to_numpy(np.int64)
        item = rows["item_idx"].to_numpy(np.int64)
        labels = [rows[c].to_numpy(np.float32) for c in ("click", "like")]
        if split == TRAIN and limit is not None and limit < len(user):
            keep = np.sort(np.random.default_rng(0).choice(len(user), limit, replace=False))
            user, item, labels = user[keep], item[keep], [v[keep] for v in labels]
        if split == TRAIN and replicate > 1:
            # Copy k gets user ids shifted by k * n_users: new users, same items.
            user = np.concatenate([user + k * n_users for k in range(replicate)])
            item, labels = np.tile(item, replicate), [np.tile(v, replicate) for v in labels]
        arrays |= {f"{split}_user": user, f"{split}_item": item}
        arrays |= {f"{split}_click": labels[0], f"{split}_like": labels[1]}
    arrays |= _item_tables(
        items, int(meta["n_items"]), int(meta["max_tokens"]), len(meta["genres"])
    )
    # The pipeline's full-ranking candidates: every target-domain item.
    arrays["target_items"] = np.sort(items.loc[items["domain"] != SOURCE, "item_idx"].to_numpy())
    sizes = {
        "n_users": n_users * replicate,
        "n_items": int(meta["n_items"]),
        "n_tokens": int(meta["n_tokens"]),
        "n_genres": len(meta["genres"]),
    }
    np.savez(out, **arrays, **{k: np.asarray(v) for k, v in sizes.items()})
    return sizes | {"train_rows": len(arrays["train_user"]), "test_rows": len(arrays["test_user"])}
