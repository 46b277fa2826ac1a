"""Stage ``embed_items``: each catalogue item's text -> a sentence embedding (paths.embeddings).

DVC keys the output on the items table and ``params.embed``, so an unchanged catalogue is
restored from the cache instead of re-encoded; ``meta.json`` records the content hash of the
(item, text) pairs and the model, so a consumer can tell which catalogue the vectors describe.
With ``model.item_encoder: id`` nothing reads them: the stage writes only ``meta.json`` and
loads no encoder, so the default pipeline pays nothing for it. With ``model.lm_finetune_layers``
N > 0 it also writes the token states entering the encoder's last N layers (float16, at most
``embed.max_tokens`` word pieces), their mask and those layers' weights: what the model's
trainable copy of the top layers (core/lm_top.py) reads, computed once per catalogue.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtrec.config import Params
from mtrec.data.embeddings import (
    IDS_FILE,
    MASK_FILE,
    META_FILE,
    STATES_FILE,
    TOP_FILE,
    VECTORS_FILE,
    catalogue_hash,
    encode_texts,
    encode_token_states,
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
    n_layers = params.model.lm_finetune_layers
    tokens = None
    if n_layers:
        tokens = encode_token_states(
            texts.tolist(), cfg.model, n_layers, cfg.max_tokens, cfg.batch_size, cfg.device
        )
    meta = {
        "model": cfg.model,
        "dim": int(vectors.shape[1]),
        "n_items": len(ids),
        "content_hash": catalogue_hash(ids, texts, cfg.model),
    }  # no wall time: a DVC output, the same every run
    with atomic_path(params.paths.embeddings) as out:
        out.mkdir()
        np.save(out / VECTORS_FILE, vectors)
        np.save(out / IDS_FILE, ids)
        if tokens is not None:
            np.save(out / STATES_FILE, tokens.states.numpy())
            np.save(out / MASK_FILE, tokens.mask.numpy())
            torch.save(tokens.weights, out / TOP_FILE)
            meta["finetune"] = {
                "layers": n_layers,
                "max_tokens": cfg.max_tokens,
                "seq_len": tokens.states.shape[1],
                "states_shape": list(tokens.states.shape),
                "states_dtype": "float16",
                "truncated_items": tokens.truncated,
                "heads": tokens.heads,
                "ffn_dim": tokens.ffn_dim,
            }
        write_json(out / META_FILE, meta)
    log.info("embedded %d items with %s in %.1fs", len(ids), cfg.model, seconds)
    if tokens is not None:
        log.info(
            "kept token states %s for the top %d layers (%.1f s)",
            tuple(tokens.states.shape),
            n_layers,
            time.perf_counter() - start - seconds,
        )
