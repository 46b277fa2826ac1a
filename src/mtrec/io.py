"""Atomic file outputs: write to a temporary sibling, then rename over the target.

A stage killed mid-write leaves the previous file (or directory) intact, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it into place only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            # Directories cannot be replaced in one rename: move the old one aside first.
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


@contextmanager
def scratch_path(target: str | Path) -> Iterator[Path]:
    """Like :func:`atomic_path`, but the result is thrown away (a data-parallel rank that
    trains like rank 0 but must not publish)."""
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / Path(target).name


def write_atomic(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_path)`` and publish the result at ``target`` atomically."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def write_json(target: str | Path, payload: Any) -> Path:
    """Write pretty, key-sorted JSON atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    return write_atomic(target, lambda p: p.write_text(text))


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def write_tables(target_dir: str | Path, tables: dict[str, pd.DataFrame], meta: dict) -> Path:
    """Write several parquet tables plus ``meta.json`` as one atomically published directory."""

    def write(tmp: Path) -> None:
        tmp.mkdir()
        for name, frame in tables.items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    return write_atomic(target_dir, write)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
