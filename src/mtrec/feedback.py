"""New interaction data (the feedback loop: recommendations -> user feedback -> retraining).

Files dropped in ``<feedback.root>/incoming/`` (``*.csv`` in the dataset's own ratings layout,
header included) pass the pipeline's data gate, the same GX suites and the same baseline, in
two steps per pass, so that the cost per file does not grow with the store. Each file alone
meets the rules that judge rows (schema, value grids, ids, encoding, duplicates within it);
then the files that pass meet the whole gate together, once, on the store as it would be with
all of them appended, which adds what only the whole store shows (a rating event already in
the store, volume and drift against the accepted profile), and the store is replaced once.
Only when that run fails are the files tried in halves, down to the ones it fails on, so the
good ones are still appended. An appended file is moved to ``accepted/``; a rejected one to
``rejected/`` beside a ``.reason.txt`` naming file, column, rule and count.

Only regular files are read (never through a link: a symlink, FIFO or device is rejected
unread), at most ``feedback.max_bytes`` of them; a rejection quotes at most
``feedback.excerpt`` escaped characters of the file. A user re-rating an item is no error:
``preprocess.duplicates`` decides which rating counts, as for the bundled data.

Reruns are safe: ``accepted/ledger.jsonl`` records the sha256 of every appended file, so the
same file is never appended twice; a pass killed between replacing the store and writing the
ledger leaves its files' rows at the end of the store, where the next pass finds them. The raw
file is replaced atomically (a new inode), so run workspaces that hard-linked the previous
version keep it. ``accepted/announced`` counts the ledger entries the asset event has
announced: a pass that failed after appending leaves its entries pending, and the next pass
announces them.
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


@dataclass(eq=False)  # one per file: compared and hashed by identity
class _Candidate:
    """A file that was read and has the store's header: its rows, newline-terminated."""

    path: Path
    digest: str
    body: bytes

    @property
    def rows(self) -> int:
        """Its interactions (non-blank lines)."""
        return sum(1 for line in self.body.splitlines() if line.strip())


class _Gate:
    """The pipeline's data gate on a private copy of the dataset, set up once per pass (the
    catalogue linked, the GX context copied); each run only swaps the ratings file."""

    def __init__(
        self, params: Params, project: Path, release: MovieLensRelease, work: Path
    ) -> None:
        self.params, self.release = params, release
        raw_dir = project / params.data.raw_dir
        self.staged = work / "raw"
        self.staged.mkdir()
        for name in (release.movies, release.tags):
            if name and (raw_dir / name).exists():
                try:
                    os.link(raw_dir / name, self.staged / name)
                except OSError:  # another file system
                    shutil.copy2(raw_dir / name, self.staged / name)
        # A private copy of the GX context: GX writes run state under gx/.
        self.gx_root = work / "gx_root"
        shutil.copytree(
            project / params.validate_.gx_root / "gx",
            self.gx_root / "gx",
            ignore=shutil.ignore_patterns("uncommitted"),
        )
        baseline_file = project / params.paths.accepted / BASELINE
        self.baseline = read_json(baseline_file) if baseline_file.exists() else None
        self.data = DataConfig(**(params.data.model_dump() | {"raw_dir": str(self.staged)}))

    def failures(self, ratings: bytes, whole_store: bool) -> str | None:
        """Run the gate with ``ratings`` as the ratings file; None = passed. Without
        ``whole_store`` the volume / drift suites, which compare a whole store with the
        accepted profile, are left out: what is left judges rows, not totals."""
        (self.staged / self.release.ratings).write_bytes(ratings)
        report = validate_tables(
            load_movielens(self.data),
            self.gx_root,
            self.baseline if whole_store else None,
            self.params.validate_.tolerance,
            self.params.validate_.examples,
        )
        return None if report.success else report.summary()


def _reject(path: Path, folder: Path, store_name: str, why: str, batch: FeedbackBatch) -> None:
    """File ``path`` away in ``folder`` with a reason that says nothing of it was appended."""
    reason = f"{path.name} was not appended (nothing from it was added to {store_name}): {why}"
    log.warning("rejected %s", reason)
    moved = _move(path, folder)
    moved.with_name(moved.name + ".reason.txt").write_text(reason + "\n")
    batch.rejected[path.name] = reason


def ingest_feedback(params: Params, project: str | Path) -> FeedbackBatch:
    """Validate, append and file away every ``*.csv`` in the incoming folder, oldest name first.

    Each file is judged alone on the gate's row-level rules; the files that pass are judged
    together on the whole store (one gate run, one atomic replace per pass), and only when
    that fails one by one, to find the files it fails on. Paths in ``params`` are relative to
    ``project`` (the folder holding ``params.yaml``).
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
    with store.open("rb") as handle:
        header = handle.readline()
    candidates: list[_Candidate] = []
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
            candidates.append(_Candidate(path, digest, _body(data, header, release, cfg.excerpt)))
        except Rejected as exc:
            _reject(path, rejected, release.ratings, str(exc), batch)
    if not candidates:
        return _recorded(batch, ledger, accepted, store, [])

    current = store.read_bytes()
    current = current if current.endswith(b"\n") else current + b"\n"
    there = _already_appended(current, candidates)
    with tempfile.TemporaryDirectory(dir=root, prefix=".check-") as work:
        gate = _Gate(params, project, release, Path(work))
        fresh = []
        for cand in candidates:
            if cand in there:
                continue
            failed = gate.failures(header + cand.body, whole_store=False)
            if failed:
                why = f"the data gate fails on its own rows: {failed}"
                _reject(cand.path, rejected, release.ratings, why, batch)
            else:
                fresh.append(cand)
        updated, appended, culprits = (
            _append_passing(gate, current, fresh) if fresh else (current, [], {})
        )
    if appended:
        write_atomic(store, lambda tmp: tmp.write_bytes(updated))
    for cand, failed in culprits.items():
        why = f"the data gate fails on {release.ratings} with its rows appended: {failed}"
        _reject(cand.path, rejected, release.ratings, why, batch)
    done = [c for c in candidates if c in there or c in appended]
    return _recorded(batch, ledger, accepted, store, done)


def _body(data: bytes, header: bytes, release: MovieLensRelease, chars: int) -> bytes:
    """The rows of ``data``, newline-terminated, if its header is the store's; else
    :class:`Rejected`."""
    first, _, body = data.partition(b"\n")
    if first.rstrip(b"\r") != header.rstrip(b"\r\n"):
        raise Rejected(
            f"its header {_excerpt(first, chars)} is not {release.ratings}'s "
            f"{_excerpt(header.strip(), chars)}"
        )
    if not body.strip():
        raise Rejected("no interactions after the header")
    return body if body.endswith(b"\n") else body + b"\n"


def _already_appended(current: bytes, candidates: list[_Candidate]) -> list[_Candidate]:
    """The files a pass killed after replacing the store (before writing their ledger
    entries) appended: their rows, in name order, end the store. Files that came in since may
    sort between them, so a file whose rows are not there is skipped, not a stop."""
    found, end = [], len(current)
    for cand in reversed(candidates):
        if current.endswith(cand.body, 0, end):
            found.append(cand)
            end -= len(cand.body)
    return found


def _append_passing(
    gate: _Gate, base: bytes, files: list[_Candidate], failed: str | None = None
) -> tuple[bytes, list[_Candidate], dict[_Candidate, str]]:
    """``base`` with the rows of those of ``files`` (in order) the whole-store gate lets in,
    those files, and the others with the gate's summary. One gate run when it passes on all
    (the usual case); else each half in turn, down to the single files it fails on, so good
    files still go in. ``failed``: the known summary of the gate on ``base`` + all ``files``.
    """
    if failed is None:
        candidate = base + b"".join(cand.body for cand in files)
        failed = gate.failures(candidate, whole_store=True)
        if failed is None:
            return candidate, files, {}
    if len(files) == 1:
        return base, [], {files[0]: failed}
    half = len(files) // 2
    base, first, culprits = _append_passing(gate, base, files[:half])
    # The whole first half went in: ``base`` + the second half is what just failed.
    known = failed if len(first) == half else None
    base, second, more = _append_passing(gate, base, files[half:], known)
    return base, first + second, culprits | more


def _recorded(
    batch: FeedbackBatch,
    ledger: list[dict],
    accepted: Path,
    store: Path,
    done: list[_Candidate],
) -> FeedbackBatch:
    """Write the ledger entries of the files whose rows are in the store, then file them in
    ``accepted/`` (killed in between, the next pass finds their digests in the ledger)."""
    at = int(time.time())
    entries = [{"file": c.path.name, "sha256": c.digest, "rows": c.rows, "at": at} for c in done]
    if entries:
        accepted.mkdir(parents=True, exist_ok=True)
        with open(accepted / LEDGER, "a") as out:
            out.writelines(json.dumps(entry) + "\n" for entry in entries)
    for cand in done:
        _move(cand.path, accepted)
        batch.accepted.append(cand.path.name)
        batch.rows += cand.rows
        log.info("appended %s: %d interactions -> %s", cand.path.name, cand.rows, store)
    batch.pending += entries
    batch.ledger_entries = len(ledger) + len(entries)
    return batch
