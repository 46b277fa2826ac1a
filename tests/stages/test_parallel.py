"""A stage's runs in forked worker processes: same results as one after another, in order."""

import os

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


def test_worker_count() -> None:
    assert worker_count(ParallelConfig(workers="auto"), CPU) == len(os.sched_getaffinity(0))
    assert worker_count(ParallelConfig(workers=3), CPU) == 3
    assert worker_count(ParallelConfig(workers=3), torch.device("cuda")) == 1
    with pytest.raises(ValueError, match=r"parallel\.workers"):
        ParallelConfig(workers=0)
