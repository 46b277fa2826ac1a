"""Data-parallel training under ``torchrun``: one process per device, gradients all-reduced.

``torchrun --nproc_per_node=N -m mtrec pretrain`` starts N copies of a stage; each joins the
process group (NCCL on CUDA, gloo on CPU), trains on its 1/N shard of every epoch's rows with
1/N of the batch (so the effective batch and the learning dynamics match one process), and
only rank 0 writes outputs. Without torchrun's environment everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Rank:
    """This process's place in the group."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes outputs and logs for everyone."""
        return self.rank == 0


def current() -> Rank:
    """The rank torchrun gave this process (rank 0 of 1 when not launched by torchrun)."""
    if not dist.is_available() or not dist.is_initialized():
        return Rank()
    return Rank(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def init_from_env() -> Rank:
    """Join the process group when torchrun set WORLD_SIZE > 1; the backend follows the device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return current()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return current()


def shutdown() -> None:
    """Leave the process group (no-op when not in one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(
    model: torch.nn.Module, device: torch.device, find_unused: bool = False
) -> torch.nn.Module:
    """The module to call in training: ``DistributedDataParallel`` in a group, else ``model``.

    Buffers (side data) are identical on every rank and never change in training, so they are
    not re-broadcast on every forward. ``find_unused``: some parameters get no gradient from
    the forward's outputs (e.g. a click tower the click score does not use)."""
    if current().world == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=ids, broadcast_buffers=False, find_unused_parameters=find_unused
    )
