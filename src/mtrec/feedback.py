"""New interaction data (the feedback loop: recommendations -> user feedback -> retraining).

Files dropped in ``<feedback.root>/incoming/`` (``*.csv`` in the dataset's own ratings layout,
header included) each pass the pipeline's data gate, the same GX suites and the same baseline,
on the dataset as it would be with the file appended. A file that passes is appended to the
dataset's raw interactions file (``data.raw_dir``) and moved to ``accepted/``; one that fails
is moved to ``rejected/`` beside a ``.reason.txt`` naming file, column, rule and count.

Only regular files are read (never through a link: a symlink, FIFO or device is rejected
unread), at most ``feedback.max_bytes`` of them; a rejection quotes at most
``feedback.excerpt`` escaped characters of the file. A user re-rating an item is no error:
``preprocess.duplicates`` decides which rating counts, as for the bundled data.

Reruns are safe: ``accepted/ledger.jsonl`` records the sha256 of every appended file, so the
same file is never appended twice, and the raw file is replaced atomically (a new inode), so
run workspaces that hard-linked the previous version keep it. ``accepted/announced`` counts
the ledger entries the asset event has announced: a pass that failed after appending leaves
its entries pending, and the next pass announces them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtrec.config import DataConfig, Params
from mtrec.data.movielens import RELEASES, MovieLensRelease, load_movielens
from mtrec.data.validation import validate_tables
from mtrec.errors import ConfigError
from mtrec.io import read_json, write_atomic
from mtrec.stages.validate import BASELINE

log = logging.getLogger(__name__)

INCOMING, ACCEPTED, REJECTED = "incoming", "accepted", "rejected"
LEDGER = "ledger.jsonl"
ANNOUNCED = "announced"


@dataclass
class FeedbackBatch:
    """What one pass over the incoming folder did; ``pending`` are the ledger entries (this
    pass's and any an earlier, failed pass left) that no asset event has announced yet."""

    store: str
    accepted: list[str] = field(default_factory=list)
    rows: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    pending: list[dict] = field(default_factory=list)
    ledger_entries: int = 0


class Rejected(Exception):
    """A file that is not appended; the message says why."""


def _release(params: Params) -> MovieLensRelease:
    """The dataset's layout; feedback needs a local, comma-separated MovieLens ratings file."""
    dataset = params.data.dataset
    if dataset not in RELEASES:
        raise ConfigError(
            f"data.dataset {dataset} cannot take feedback: feedback files are appended to a "
            "local MovieLens-layout ratings.csv (ml-latest-small, or ml-25m with a local "
            "data.raw_dir); the files in incoming/ stay there, untouched"
        )
    release = RELEASES[dataset]
    if params.data.url or release.url:
        raise ConfigError(
            f"feedback appends to a local data.raw_dir; {dataset} is downloaded "
            "(point data.raw_dir at a local copy and unset its url to take feedback)"
        )
    if release.separator != ",":
        raise ConfigError(f"feedback expects CSV ratings; {release.ratings} is not CSV")
    return release


def _excerpt(data: bytes, chars: int) -> str:
    """At most ``chars`` characters of ``data``, escaped (no control characters, no bytes that
    are not UTF-8 reach a log line or a reason file)."""
    text = data[: chars * 4].decode("utf-8", errors="backslashreplace")
    short = text[:chars] + ("..." if len(text) > chars else "")
    return repr(short)


def _read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file, not through a link; anything else is :class:`Rejected`."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise Rejected(f"{kind} (only regular files are read; it was not opened)")
    # O_NOFOLLOW / O_NONBLOCK: swapped for a link or a FIFO since lstat, it still cannot make
    # this read follow the link or block.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise Rejected("not a regular file (only regular files are read)")
        if info.st_size > max_bytes:
            raise Rejected(
                f"{info.st_size:,} bytes, over feedback.max_bytes = {max_bytes:,} (not read)"
            )
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while being read
        raise Rejected(f"over feedback.max_bytes = {max_bytes:,} (grew while being read)")
    return data


def _move(src: Path, folder: Path) -> Path:
    """Move ``src`` (the link itself, for a link) into ``folder``, never over an earlier file."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / src.name
    if os.path.lexists(dest):
        dest = folder / f"{time.strftime('%Y%m%dT%H%M%S')}-{src.name}"
    os.rename(src, dest)
    return dest


def _ledger(accepted: Path) -> list[dict]:
    path = accepted / LEDGER
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _announced(accepted: Path) -> int:
    path = accepted / ANNOUNCED
    return int(path.read_text()) if path.exists() else 0


def mark_announced(params: Params, project: str | Path, entries: int) -> None:
    """Record that the first ``entries`` ledger entries were announced by an asset event."""
    accepted = Path(project).resolve() / params.feedback.root / ACCEPTED
    write_atomic(accepted / ANNOUNCED, lambda tmp: tmp.write_text(f"{entries}\n"))


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
    cfg = params.feedback
    root = project / cfg.root
    incoming, accepted, rejected = root / INCOMING, root / ACCEPTED, root / REJECTED
    files = sorted(p for p in incoming.glob("*.csv") if not p.name.startswith("."))
    ledger = _ledger(accepted)
    pending = ledger[_announced(accepted) :]
    if not files:
        log.info("no new files in %s", incoming)
        return FeedbackBatch(store="", pending=pending, ledger_entries=len(ledger))
    release = _release(params)
    store = project / params.data.raw_dir / release.ratings
    batch = FeedbackBatch(store=str(store), pending=pending)
    seen = {entry["sha256"] for entry in ledger}
    header = store.open("rb").readline()
    for path in files:
        try:
            data = _read_regular(path, cfg.max_bytes)
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                log.info(
                    "%s was appended before (sha256 %s): filed, not appended", path.name, digest
                )
                _move(path, accepted)
                batch.duplicates.append(path.name)
                continue
            candidate, rows = _appended(params, project, release, store, header, data, root)
        except Rejected as exc:
            reason = (
                f"{path.name} was not appended (nothing from it was added to "
                f"{release.ratings}): {exc}"
            )
            log.warning("rejected %s", reason)
            moved = _move(path, rejected)
            moved.with_name(moved.name + ".reason.txt").write_text(reason + "\n")
            batch.rejected[path.name] = reason
            continue
        write_atomic(store, lambda tmp, content=candidate: tmp.write_bytes(content))
        entry = {"file": path.name, "sha256": digest, "rows": rows, "at": int(time.time())}
        accepted.mkdir(parents=True, exist_ok=True)
        with open(accepted / LEDGER, "a") as out:
            out.write(json.dumps(entry) + "\n")
        seen.add(digest)
        batch.pending.append(entry)
        _move(path, accepted)
        batch.accepted.append(path.name)
        batch.rows += rows
        log.info("appended %s: %d interactions -> %s", path.name, rows, store)
    batch.ledger_entries = len(ledger) + len(batch.accepted)
    return batch


def _appended(
    params: Params,
    project: Path,
    release: MovieLensRelease,
    store: Path,
    header: bytes,
    data: bytes,
    root: Path,
) -> tuple[bytes, int]:
    """The ratings file with ``data``'s rows appended, and their count, if the data gate passes
    on it; else :class:`Rejected`."""
    chars = params.feedback.excerpt
    first, _, body = data.partition(b"\n")
    if first.rstrip(b"\r") != header.rstrip(b"\r\n"):
        raise Rejected(
            f"its header {_excerpt(first, chars)} is not {release.ratings}'s "
            f"{_excerpt(header.strip(), chars)}"
        )
    if not body.strip():
        raise Rejected("no interactions after the header")
    body = body if body.endswith(b"\n") else body + b"\n"
    current = store.read_bytes()
    current = current if current.endswith(b"\n") else current + b"\n"
    # Appended by a pass that stopped before writing the ledger: do not append again.
    candidate = current if current.endswith(body) else current + body
    with tempfile.TemporaryDirectory(dir=root, prefix=".check-") as work:
        failed = _check(params, project, release, candidate, Path(work))
    if failed:
        raise Rejected(f"the data gate fails with its rows appended: {failed}")
    return candidate, sum(1 for line in body.splitlines() if line.strip())
