"""A stage's runs in forked worker processes: same results as one after another, in order."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from mtrec.config import ParallelConfig
from mtrec.core.trainer import fit
from mtrec.errors import ConfigError, WorkerDied
from mtrec.stages.parallel import map_runs, worker_count

from ..core.helpers import SYNTHETIC_TRAINING, learnable_rows, tiny_model

CPU = torch.device("cpu")
TRAINING = SYNTHETIC_TRAINING.model_copy(update={"epochs": 3})


def train(seed: int) -> dict[str, torch.Tensor]:
    """A real (tiny) training run that seeds itself, as the stages' runs do."""
    model = tiny_model(seed)
    fit(model, learnable_rows(256, seed=seed), learnable_rows(64, seed=9), TRAINING, seed, CPU)
    return model.state_dict()


def test_workers_train_what_the_stage_process_trains() -> None:
    # Both sides single-threaded, as `make test` runs: the same floats, bit for bit.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        in_turn = [train(seed) for seed in (0, 1, 2)]
    finally:
        torch.set_num_threads(threads)
    in_workers = map_runs(train, [0, 1, 2], workers=2)
    for expected, got in zip(in_turn, in_workers, strict=True):
        assert expected.keys() == got.keys()
        for name in expected:
            assert torch.equal(expected[name], got[name]), name
    assert not torch.equal(
        in_workers[0]["towers.click.0.weight"], in_workers[1]["towers.click.0.weight"]
    )  # the seeds differ, so the check above compared distinct runs


def where(job: int) -> tuple[int, int, int]:
    return job, os.getpid(), torch.get_num_threads()


def test_runs_go_to_single_threaded_forked_workers_and_come_back_in_order() -> None:
    got = map_runs(where, list(range(6)), workers=2)
    assert [job for job, _, _ in got] == list(range(6))
    pids = {pid for _, pid, _ in got}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert {threads for _, _, threads in got} == {1}


def test_one_worker_or_one_job_runs_in_this_process() -> None:
    assert map_runs(where, [0, 1], workers=1)[1][1] == os.getpid()
    assert map_runs(where, [7], workers=4) == [(7, os.getpid(), torch.get_num_threads())]


def fail_on_two(job: int) -> int:
    if job == 2:
        raise ConfigError(f"run {job} failed")
    return job


def test_a_failed_run_raises_its_own_error() -> None:
    with pytest.raises(ConfigError, match="run 2 failed"):
        map_runs(fail_on_two, [0, 1, 2, 3], workers=2)


def die_on_one(job: int) -> int:
    if job == 1:
        os._exit(9)  # as the kernel's OOM killer would end it: no exception, no result
    return job


def test_a_dead_worker_is_a_named_error() -> None:
    with pytest.raises(WorkerDied, match=r"parallel\.workers: 1"):
        map_runs(die_on_one, [0, 1, 2], workers=2)


def test_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    auto = ParallelConfig(workers="auto")
    # One per core, or up to twice that where the last round would leave a core idle:
    # 3 seeds in 3 processes (1.5 run-times of 2 cores) rather than in 2 (two rounds).
    assert [worker_count(auto, CPU, jobs) for jobs in (1, 2, 3, 4, 6, 7, 21)] == [
        1,
        2,
        3,
        2,
        2,
        2,
        3,
    ]
    assert worker_count(ParallelConfig(workers=3), CPU, 21) == 3
    assert worker_count(ParallelConfig(workers=3), torch.device("cuda"), 21) == 1
    with pytest.raises(ValueError, match=r"parallel\.workers"):
        ParallelConfig(workers=0)


KILLED_PARENT = """
import sys, time
from pathlib import Path
from mtrec.stages.parallel import map_runs

def train(job):  # stands for a long training run: says where it runs, then works on
    Path(sys.argv[1], str(job)).write_text(str(__import__("os").getpid()))
    time.sleep(600)

map_runs(train, [0, 1], workers=2)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(condition, what: str, polls: int = 600) -> None:
    for _ in range(polls):
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def test_workers_die_with_a_killed_stage_process(tmp_path) -> None:
    # kill -9 of the stage process (python -m mtrec pretrain, or its Airflow task): no signal
    # handler runs, so only the kernel can take the workers down with it.
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT, str(tmp_path)])
    try:
        _wait_for(lambda: len(list(tmp_path.iterdir())) == 2, "both workers training")
        workers = [int(p.read_text()) for p in tmp_path.iterdir()]
        assert all(_alive(pid) for pid in workers)
        parent.kill()
        parent.wait()
        _wait_for(lambda: not any(_alive(pid) for pid in workers), "the workers gone")
    finally:
        parent.kill()
        for p in tmp_path.iterdir():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(p.read_text()), signal.SIGKILL)
