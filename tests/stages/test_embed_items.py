"""Stage embed_items: the packaged sentence encoder, offline, keyed by the catalogue's text."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from mtrec.config import load_params
from mtrec.core.lm_top import LMTop
from mtrec.data.embeddings import (
    IDS_FILE,
    MASK_FILE,
    META_FILE,
    STATES_FILE,
    TOP_FILE,
    VECTORS_FILE,
    catalogue_hash,
    encode_texts,
    item_embedding_matrix,
    item_texts,
    item_token_states,
)
from mtrec.errors import ArtifactError
from mtrec.io import read_json
from mtrec.stages import embed_items

from ..conftest import PROJECT_ROOT, tool_env

MODEL = "all-MiniLM-L6-v2"
N_ITEMS = 24  # a slice of the bundled catalogue: the stage's cost is the encoder, not the data


@pytest.fixture(scope="module")
def items(canonical) -> pd.DataFrame:
    return canonical.items.sort_values("item").head(N_ITEMS).reset_index(drop=True)


def test_item_text_reads_title_genres_and_tags_once(items) -> None:
    text = item_texts(items)[0]
    assert text.startswith("Toy Story (1995). Adventure, Animation")
    assert text.count("Toy Story") == 1  # the tags field repeats the title: read it once


def test_identical_text_gives_identical_embeddings(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = ["Toy Story (1995). Animation", "Heat (1995). Crime", "Toy Story (1995). Animation"]
    first = encode_texts(texts, MODEL, batch_size=2, device="cpu")
    assert first.shape == (3, 384) and first.dtype == np.float32
    # The same text in another batch, or alone: equal up to float summation order (a batch's
    # padding changes the GEMM shapes, and MKL's results then differ in the last bit, ~1e-7),
    # while different texts differ by orders of magnitude more.
    np.testing.assert_allclose(first[2], first[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(encode_texts(texts[:1], MODEL, 1, "cpu")[0], first[0], atol=1e-5)
    assert np.abs(first[0] - first[1]).max() > 1e-2


def test_content_hash_follows_the_text_not_the_row_order(items) -> None:
    ids, texts = items["item"].to_numpy(), item_texts(items)
    key = catalogue_hash(ids, texts, MODEL)
    assert catalogue_hash(ids[::-1], texts[::-1], MODEL) == key
    edited = texts.copy()
    edited.iloc[3] += " sequel"
    assert catalogue_hash(ids, edited, MODEL) != key
    assert catalogue_hash(ids, texts, "another-model") != key


def _dvc(root, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=tool_env(root) | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_stage_runs_offline_and_dvc_reruns_it_only_for_a_changed_catalogue(
    tmp_path, items, monkeypatch
) -> None:
    # A project holding only this stage (as dvc.yaml declares it) and a catalogue slice.
    shutil.copytree(
        PROJECT_ROOT / "src" / "mtrec",
        tmp_path / "src" / "mtrec",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    pipeline = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    stage = {"stages": {"embed_items": pipeline["stages"]["embed_items"]}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(stage))
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["model"]["item_encoder"] = "lm"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    table = tmp_path / "data" / "interim" / "items.parquet"
    table.parent.mkdir(parents=True)
    items.to_parquet(table)
    _dvc(tmp_path, "init", "--no-scm", "-q")
    # The stage in this process (the encoder is loaded once per process), then recorded as
    # `dvc repro` would record it.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embed_items.run(load_params("params.yaml"))
    _dvc(tmp_path, "commit", "-f", "-q", "embed_items")

    out = tmp_path / "data" / "embeddings"
    meta = read_json(out / META_FILE)
    texts = item_texts(items)
    assert meta["content_hash"] == catalogue_hash(items["item"].to_numpy(), texts, MODEL)
    vectors = np.load(out / VECTORS_FILE)
    assert vectors.shape == (N_ITEMS, 384)
    assert np.array_equal(np.load(out / IDS_FILE), items["item"].to_numpy())
    # Rearranged by item_idx for the model, row 0 (unknown item) zero.
    processed = pd.DataFrame({"item": items["item"][::-1], "item_idx": np.arange(1, N_ITEMS + 1)})
    matrix = item_embedding_matrix(out, processed, N_ITEMS + 1).numpy()
    assert not matrix[0].any() and np.array_equal(matrix[1], vectors[-1])
    # model.lm_finetune_layers 0 (the default): no token states.
    assert "finetune" not in meta and not (out / STATES_FILE).exists()

    assert "up to date" in _dvc(tmp_path, "status").stdout.lower()
    changed = items.copy()
    changed.loc[0, "title"] = "Toy Story 5 (2031)"
    changed.to_parquet(table)
    assert "modified" in _dvc(tmp_path, "status").stdout
    items.to_parquet(table)  # the same catalogue again: nothing to recompute
    assert "up to date" in _dvc(tmp_path, "status").stdout.lower()


def test_stage_keeps_the_token_states_the_fine_tuned_top_layers_read(
    tmp_path, items, monkeypatch
) -> None:
    stage = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]["embed_items"]
    assert "model.lm_finetune_layers" in stage["params"]  # changing N reruns the stage
    table = tmp_path / "interim" / "items.parquet"
    table.parent.mkdir()
    items.to_parquet(table)
    out = tmp_path / "embeddings"
    params = load_params(
        PROJECT_ROOT / "params.yaml",
        {
            "paths": {"interim": str(table.parent), "embeddings": str(out)},
            "model": {"item_encoder": "lm", "lm_finetune_layers": 1},
            "embed": {"max_tokens": 16, "device": "cpu"},
        },
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embed_items.run(params)

    vectors = np.load(out / VECTORS_FILE)  # the frozen path: unchanged, full length
    assert np.array_equal(vectors, encode_texts(item_texts(items).tolist(), MODEL, 64, "cpu"))
    states, mask = np.load(out / STATES_FILE), np.load(out / MASK_FILE)
    meta = read_json(out / META_FILE)["finetune"]
    assert states.dtype == np.float16 and mask.dtype == bool
    assert meta["layers"] == 1 and meta["states_shape"] == [N_ITEMS, 16, 384]
    assert list(states.shape) == meta["states_shape"] and mask.shape == (N_ITEMS, 16)
    lengths = mask.sum(1)
    assert 0 < meta["truncated_items"] <= (lengths == 16).sum()  # some texts exceed 16 pieces
    assert set(torch.load(out / TOP_FILE, weights_only=True)) == set(
        LMTop(1, 384, meta["heads"], meta["ffn_dim"], 0.0).state_dict()
    )

    # Rearranged by item_idx for the model (row 0 without tokens); the packaged top layer over
    # them gives the frozen vectors back, exactly so for the texts that fit.
    processed = pd.DataFrame({"item": items["item"][::-1], "item_idx": np.arange(1, N_ITEMS + 1)})
    tokens = item_token_states(out, processed, N_ITEMS + 1, 1)
    assert not tokens.mask[0].any() and torch.equal(tokens.mask[1], torch.from_numpy(mask[-1]))
    top = LMTop(1, 384, tokens.heads, tokens.ffn_dim, 0.0).eval()
    top.load_state_dict(tokens.weights)
    with torch.no_grad():
        rebuilt = top(tokens.states[1:], tokens.mask[1:]).flip(0).numpy()
    fits = lengths < 16
    np.testing.assert_allclose(rebuilt[fits], vectors[fits], atol=5e-4)
    assert (rebuilt * vectors).sum(1).min() > 0.8  # truncated texts: close, not equal
    with pytest.raises(ArtifactError, match="rerun embed_items"):
        item_token_states(out, processed, N_ITEMS + 1, 2)
