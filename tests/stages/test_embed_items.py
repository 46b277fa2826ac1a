"""Stage embed_items: the packaged sentence encoder, offline, keyed by the catalogue's text."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from mtrec.config import load_params
from mtrec.data.embeddings import (
    IDS_FILE,
    META_FILE,
    VECTORS_FILE,
    catalogue_hash,
    encode_texts,
    item_embedding_matrix,
    item_texts,
)
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
    assert np.array_equal(first[0], first[2])  # same text in another batch
    assert not np.allclose(first[0], first[1])
    assert np.array_equal(encode_texts(texts[:1], MODEL, 1, "cpu")[0], first[0])


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

    assert "up to date" in _dvc(tmp_path, "status").stdout.lower()
    changed = items.copy()
    changed.loc[0, "title"] = "Toy Story 5 (2031)"
    changed.to_parquet(table)
    assert "modified" in _dvc(tmp_path, "status").stdout
    items.to_parquet(table)  # the same catalogue again: nothing to recompute
    assert "up to date" in _dvc(tmp_path, "status").stdout.lower()
