"""Amazon cross-domain adapter: the DisenCDR release format (bundled: sport <-> phone).

A pair ``A``-``B`` is two folders: ``A_B`` holds domain A's interactions and ``B_A`` domain B's,
each a ``train.txt`` and ``test.txt`` of ``user<TAB>item<TAB>1`` lines. Users are shared across
the pair; item ids are local to each folder. The release has no ratings, times, titles or
categories: every line is an implicit positive (rating 1 on a 1..1 scale, ``like`` = click) and
the line's position in its file stands in for a time, so "latest" means "last in the file".

Canonical ids: users keep the release's ids; an item's id is its release id plus its domain's
offset (the first domain's ids unchanged, the second's shifted past the first's largest id), and
the items table keeps ``raw_item``. The test lines become rows with ``split = test`` (the
protocol ``dataset`` keeps them as the test split). Fixed evaluation candidates
(``<raw_dir>/candidates/<A>_<B>.candidates*.tsv.gz``: ``user<TAB>positive<TAB>negatives`` per
test line of folder ``A_B``) become the canonical ``candidates`` table.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mtrec.config import DataConfig
from mtrec.data.canonical import CanonicalTables, TableSource
from mtrec.data.splitting import TEST, TRAIN
from mtrec.errors import DataSourceError

log = logging.getLogger(__name__)

_COLUMNS = ["user", "item", "label"]
_SPLIT_FILES = {TRAIN: "train.txt", TEST: "test.txt"}


def _folder(raw_dir: Path, domain: str, other: str) -> Path:
    folder = raw_dir / f"{domain}_{other}"
    if not folder.is_dir():
        raise DataSourceError(
            f"{folder}: not found; data.domains {[domain, other]} must name a pair whose "
            f"folders {domain}_{other} and {other}_{domain} are in {raw_dir}"
        )
    return folder


def _read_lines(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataSourceError(f"{path}: file not found")
    # Kept as read (strings where a line is malformed) so validation names the bad values.
    return pd.read_csv(path, sep="\t", header=None, names=_COLUMNS, dtype=str)


def _read_candidates(path: Path) -> pd.DataFrame:
    users, positives, negatives = [], [], []
    with gzip.open(path, "rt") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3:
                raise DataSourceError(
                    f"{path}, line {number}: expected user<TAB>positive<TAB>negatives, "
                    f"got {len(fields)} fields"
                )
            users.append(int(fields[0]))
            positives.append(int(fields[1]))
            negatives.append(np.array(fields[2].split(), dtype=np.int64))
    return pd.DataFrame({"user": users, "item": positives, "negatives": negatives})


def _candidates_glob(domain: str, other: str) -> str:
    return f"{domain}_{other}.candidates*.tsv.gz"


def _check_candidate_names(raw_dir: Path, first: str, second: str) -> None:
    """A candidates file (``*.tsv.gz``) that no domain of the pair reads is misnamed: skipped
    silently, it would turn the fixed-candidates protocol off (README.md and the like may stay)."""
    folder = raw_dir / "candidates"
    if not folder.is_dir():
        return
    patterns = [_candidates_glob(first, second), _candidates_glob(second, first)]
    stray = sorted(
        p.name
        for p in folder.iterdir()
        if (p.name.endswith(".tsv.gz") or "candidates" in p.name)
        and not any(p.match(pattern) for pattern in patterns)
    )
    if stray:
        raise DataSourceError(
            f"{folder}: {', '.join(stray)} not read: candidate files of data.domains "
            f"{[first, second]} must be named {' or '.join(patterns)} "
            "(<target>_<other>.candidates*.tsv.gz); rename or move the others"
        )


def load_amazon(cfg: DataConfig) -> CanonicalTables:
    """Read one DisenCDR pair (``data.domains``) into the canonical tables."""
    raw_dir = Path(cfg.raw_dir)
    first, second = cfg.domains
    parts, items, candidates, sources = [], [], [], {}
    offset = 0
    for domain, other in ((first, second), (second, first)):
        folder = _folder(raw_dir, domain, other)
        frame = pd.concat(
            [
                _read_lines(folder / name).assign(split=split)
                for split, name in _SPLIT_FILES.items()
            ],
            ignore_index=True,
        )
        frame["timestamp"] = np.arange(len(frame))  # test lines come after the train lines
        raw_items = pd.to_numeric(frame["item"], errors="coerce")
        frame["item"] = (raw_items + offset).astype("Int64")
        catalogue = np.unique(raw_items.dropna().astype(np.int64))
        items.append(
            pd.DataFrame({"item": catalogue + offset, "raw_item": catalogue}).assign(domain=domain)
        )
        for path in sorted((raw_dir / "candidates").glob(_candidates_glob(domain, other))):
            lines = _read_candidates(path)
            lines["item"] += offset
            lines["negatives"] = [n + offset for n in lines["negatives"]]
            candidates.append(lines.assign(domain=domain))
            sources["candidates"] = TableSource(str(path), {"positive": "item"})
        parts.append(frame.assign(domain=domain))
        offset += int(catalogue.max()) + 1 if len(catalogue) else 0
    _check_candidate_names(raw_dir, first, second)
    interactions = pd.concat(parts, ignore_index=True)
    interactions["user"] = pd.to_numeric(interactions["user"], errors="coerce").astype("Int64")
    # Implicit feedback: every line is a positive; the label column must say so.
    interactions["rating"] = pd.to_numeric(interactions.pop("label"), errors="coerce")
    interactions = interactions.assign(click=1, like=1)
    catalogue = pd.concat(items, ignore_index=True).assign(title="", text="", year=np.nan)
    catalogue["categories"] = [[] for _ in range(len(catalogue))]
    train_file = str(raw_dir / f"{first}_{second}" / "train.txt")
    columns = {"0": "user", "1": "item", "2": "rating"}
    sources |= {
        "interactions": TableSource(train_file, columns, extra=[str(raw_dir)]),
        "items": TableSource(train_file, {"1": "item"}),
        "users": TableSource(train_file, {"0": "user"}),
    }
    users = interactions.groupby("user", as_index=False).size().rename(columns={"size": "activity"})
    log.info("amazon %s: %d interactions, %d items", cfg.domains, len(interactions), len(catalogue))
    return CanonicalTables(
        interactions=interactions,
        items=catalogue,
        users=users,
        sources=sources,
        dataset=f"{cfg.dataset}:{first}-{second}",
        rating_scale=(1.0, 1.0),
        candidates=pd.concat(candidates, ignore_index=True) if candidates else None,
    )
