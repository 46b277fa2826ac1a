"""New interaction data (the feedback loop: recommendations -> user feedback -> retraining).

Files dropped in ``<feedback.root>/incoming/`` (``*.csv`` in the dataset's own ratings layout,
header included) each pass the pipeline's data gate, the same GX suites and the same baseline,
on the dataset as it would be with the file appended. A file that passes is appended to the
dataset's raw interactions file (``data.raw_dir``) and moved to ``accepted/``; one that fails
is moved to ``rejected/`` beside a ``.reason.txt`` naming file, column, rule and count.

Reruns are safe: ``accepted/ledger.jsonl`` records the sha256 of every appended file, so the
same file is never appended twice, and the raw file is replaced atomically (a new inode), so
run workspaces that hard-linked the previous version keep it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtrec.config import DataConfig, Params
from mtrec.data.movielens import RELEASES, MovieLensRelease, load_movielens
from mtrec.data.validation import validate_tables
from mtrec.errors import ConfigError
from mtrec.io import read_json, sha256_file, write_atomic
from mtrec.stages.validate import BASELINE

log = logging.getLogger(__name__)

INCOMING, ACCEPTED, REJECTED = "incoming", "accepted", "rejected"
LEDGER = "ledger.jsonl"


@dataclass
class FeedbackBatch:
    """What one pass over the incoming folder did."""

    store: str
    accepted: list[str] = field(default_factory=list)
    rows: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)


def _release(params: Params) -> MovieLensRelease:
    """The dataset's layout; feedback needs a local, comma-separated ratings file."""
    release = RELEASES[params.data.dataset]
    if params.data.url or release.url:
        raise ConfigError(
            f"feedback appends to a local data.raw_dir; {params.data.dataset} is downloaded "
            "(point data.raw_dir at a local copy and unset its url to take feedback)"
        )
    if release.separator != ",":
        raise ConfigError(f"feedback expects CSV ratings; {release.ratings} is not CSV")
    return release


def _move(src: Path, folder: Path) -> Path:
    """Move ``src`` into ``folder`` without overwriting an earlier file of the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / src.name
    if dest.exists():
        dest = folder / f"{time.strftime('%Y%m%dT%H%M%S')}-{src.name}"
    return Path(shutil.move(src, dest))


def _ledger(accepted: Path) -> set[str]:
    path = accepted / LEDGER
    if not path.exists():
        return set()
    return {json.loads(line)["sha256"] for line in path.read_text().splitlines() if line}


def _check(
    params: Params, project: Path, release: MovieLensRelease, candidate: bytes, work: Path
) -> str | None:
    """Run the data gate on the dataset with ``candidate`` as its ratings file; None = passed."""
    raw_dir = project / params.data.raw_dir
    staged = work / "raw"
    staged.mkdir()
    for name in (release.movies, release.tags):
        if name and (raw_dir / name).exists():
            try:
                os.link(raw_dir / name, staged / name)
            except OSError:  # another file system
                shutil.copy2(raw_dir / name, staged / name)
    (staged / release.ratings).write_bytes(candidate)
    # A private copy of the GX context: GX writes run state under gx/.
    gx_root = work / "gx_root"
    shutil.copytree(
        project / params.validate_.gx_root / "gx",
        gx_root / "gx",
        ignore=shutil.ignore_patterns("uncommitted"),
    )
    baseline_file = project / params.paths.accepted / BASELINE
    report = validate_tables(
        load_movielens(DataConfig(**(params.data.model_dump() | {"raw_dir": str(staged)}))),
        gx_root,
        read_json(baseline_file) if baseline_file.exists() else None,
        params.validate_.tolerance,
        params.validate_.examples,
    )
    return None if report.success else report.summary()


def ingest_feedback(params: Params, project: str | Path) -> FeedbackBatch:
    """Validate, append and file away every ``*.csv`` in the incoming folder, oldest name first.

    Paths in ``params`` are relative to ``project`` (the folder holding ``params.yaml``).
    """
    project = Path(project).resolve()
    release = _release(params)
    root = project / params.feedback.root
    incoming, accepted, rejected = root / INCOMING, root / ACCEPTED, root / REJECTED
    store = project / params.data.raw_dir / release.ratings
    batch = FeedbackBatch(store=str(store))
    files = sorted(p for p in incoming.glob("*.csv") if not p.name.startswith("."))
    if not files:
        log.info("no new files in %s", incoming)
        return batch
    seen = _ledger(accepted)
    header = store.open("rb").readline()
    for path in files:
        data, digest = path.read_bytes(), sha256_file(path)
        if digest in seen:
            log.info("%s was appended before (sha256 %s); filed, not appended", path.name, digest)
            _move(path, accepted)
            batch.duplicates.append(path.name)
            continue
        first, _, body = data.partition(b"\n")
        reason = None
        if first.rstrip(b"\r") != header.rstrip(b"\r\n"):
            reason = (
                f"header {first.decode(errors='replace')!r} is not {release.ratings}'s "
                f"{header.decode(errors='replace').strip()!r}"
            )
        elif not body.strip():
            reason = "no interactions after the header"
        if reason is None:
            body = body if body.endswith(b"\n") else body + b"\n"
            current = store.read_bytes()
            current = current if current.endswith(b"\n") else current + b"\n"
            # Appended by a pass that stopped before writing the ledger: do not append again.
            candidate = current if current.endswith(body) else current + body
            with tempfile.TemporaryDirectory(dir=root, prefix=".check-") as work:
                failed = _check(params, project, release, candidate, Path(work))
            if failed:
                reason = f"{path.name} appended to {release.ratings}: {failed}"
        if reason is not None:
            log.warning("rejected %s: %s", path.name, reason)
            moved = _move(path, rejected)
            moved.with_name(moved.name + ".reason.txt").write_text(reason + "\n")
            batch.rejected[path.name] = reason
            continue
        rows = sum(1 for line in body.splitlines() if line.strip())
        write_atomic(store, lambda tmp, content=candidate: tmp.write_bytes(content))
        accepted.mkdir(parents=True, exist_ok=True)
        with open(accepted / LEDGER, "a") as ledger:
            entry = {"file": path.name, "sha256": digest, "rows": rows, "at": int(time.time())}
            ledger.write(json.dumps(entry) + "\n")
        seen.add(digest)
        _move(path, accepted)
        batch.accepted.append(path.name)
        batch.rows += rows
        log.info("appended %s: %d interactions -> %s", path.name, rows, store)
    return batch
