"""A stage's independent training runs (seeds, strategies) in parallel worker processes.

The models are small: one run on two torch threads trains only 1.18x faster than on one
(pretrain and transfer on the bundled data, measured), so on a CPU the cores are better
spent on several single-threaded runs at once. Workers are forked (the data and the imported
libraries come with them, nothing is re-loaded), each run seeds itself (``build_model``), so a
run's result does not depend on which worker trained it or what ran before. On CUDA, and
under torchrun, runs stay in the stage's own process, one after another.
"""

from __future__ import annotations

import ctypes
import logging
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import torch

from mtrec.config import ParallelConfig
from mtrec.core import distributed
from mtrec.errors import WorkerDied

log = logging.getLogger(__name__)

Job = TypeVar("Job")
Result = TypeVar("Result")

# The function the forked workers call: set in the parent before the pool forks, so it is
# inherited, never pickled (stage functions close over data that pickling would copy).
_RUN: Callable[[Any], Any] | None = None


def worker_count(cfg: ParallelConfig, device: torch.device, jobs: int) -> int:
    """Processes to train ``jobs`` runs in: 1 on CUDA or under torchrun, else ``cfg.workers``.
    auto: one per core this process may run on, or up to twice that where it evens out the
    last round. Single-threaded processes share the cores about evenly, so W workers take
    about ceil(jobs / W) * W / cores run-times: 3 seeds on 2 cores take 1.5 in 3 processes
    against 2 in 2 (pretrain on the bundled data: 68 -> 58 s)."""
    if device.type != "cpu" or distributed.current().world > 1:
        return 1
    if cfg.workers != "auto":
        return cfg.workers
    cores = len(os.sched_getaffinity(0))
    if jobs <= cores:
        return max(jobs, 1)
    return min(range(cores, min(jobs, 2 * cores) + 1), key=lambda w: (math.ceil(jobs / w) * w, w))


# prctl(2) option: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def _init_worker(parent: int) -> None:
    """Single-threaded torch, and die with the stage process: a ``kill -9`` of the stage (or
    of its task) must not leave workers training on, reparented to PID 1."""
    torch.set_num_threads(1)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def _call(job: Any) -> Any:
    assert _RUN is not None, "map_runs sets the run function before forking"
    return _RUN(job)


def map_runs(run: Callable[[Job], Result], jobs: Sequence[Job], workers: int) -> list[Result]:
    """``run(job)`` for every job, results in job order. With ``workers`` > 1 (and more than
    one job) in that many forked single-threaded processes; the results come back pickled
    (models included). A run's exception is raised here; a worker that dies raises
    :class:`WorkerDied`."""
    workers = min(workers, len(jobs))
    if workers <= 1:
        return [run(job) for job in jobs]
    global _RUN
    _RUN = run
    log.info("%d runs in %d single-threaded worker processes", len(jobs), workers)
    try:
        # Forked like torch's DataLoader workers, and like them single-threaded: torch's CPU
        # wheel uses GNU OpenMP, whose thread pool does not survive a fork.
        with ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        ) as pool:
            return list(pool.map(_call, jobs))
    except BrokenProcessPool as exc:
        raise WorkerDied(
            f"a worker training {len(jobs)} runs in {workers} processes died without a result "
            "(killed: out of memory?); nothing was written. parallel.workers: 1 trains them "
            "one after another in the stage's own process"
        ) from exc
    finally:
        _RUN = None
