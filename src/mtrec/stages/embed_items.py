"""Stage ``embed_items``: each catalogue item's text -> a sentence embedding (paths.embeddings).

DVC keys the output on the items table and ``params.embed``, so an unchanged catalogue is
restored from the cache instead of re-encoded; ``meta.json`` records the content hash of the
(item, text) pairs and the model, so a consumer can tell which catalogue the vectors describe.
With ``model.item_encoder: id`` nothing reads them: the stage writes only ``meta.json`` and
loads no encoder, so the default pipeline pays nothing for it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mtrec.config import Params
from mtrec.data.embeddings import (
    IDS_FILE,
    META_FILE,
    VECTORS_FILE,
    catalogue_hash,
    encode_texts,
    item_texts,
)
from mtrec.io import atomic_path, write_json

log = logging.getLogger(__name__)


def run(params: Params) -> None:
    """Encode title, genres and tags of every item with the packaged sentence encoder."""
    cfg = params.embed
    if params.model.item_encoder != "lm":
        # An empty output keeps the DAG and dvc.yaml uniform (as pretrain does without a source).
        with atomic_path(params.paths.embeddings) as out:
            out.mkdir()
            write_json(out / META_FILE, {"skipped": "model.item_encoder is not lm"})
        log.info("model.item_encoder is %s: nothing to embed", params.model.item_encoder)
        return
    # The items table alone: new interactions (feedback) must not invalidate the embeddings.
    items = pd.read_parquet(Path(params.paths.interim) / "items.parquet").sort_values("item")
    texts = item_texts(items)
    ids = items["item"].to_numpy(np.int64)
    start = time.perf_counter()
    vectors = encode_texts(texts.tolist(), cfg.model, cfg.batch_size, cfg.device)
    seconds = time.perf_counter() - start
    with atomic_path(params.paths.embeddings) as out:
        out.mkdir()
        np.save(out / VECTORS_FILE, vectors)
        np.save(out / IDS_FILE, ids)
        write_json(
            out / META_FILE,
            {
                "model": cfg.model,
                "dim": int(vectors.shape[1]),
                "n_items": len(ids),
                "content_hash": catalogue_hash(ids, texts, cfg.model),
                "seconds": round(seconds, 1),
            },
        )
    log.info("embedded %d items with %s in %.1fs", len(ids), cfg.model, seconds)
