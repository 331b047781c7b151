"""torchrun / DDP helpers: NCCL on GPU, gloo on CPU, multi-node through torchrun's env."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.distributed as dist

from utils.runtime.device import pick_device


@dataclass
class DistInfo:
    """This process's place in the run: rank, world size, local rank and device (``dist_info`` where held)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    flag_group: Any = None  # a gloo group for the host's flags under NCCL: agreeing on them never waits for the GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_world_size() -> int:
    """The number of processes torchrun launched (its WORLD_SIZE; 1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device_choice: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set)."""
    world = launched_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, local_rank)
    flag_group = None
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            flag_group = dist.new_group(backend="gloo")
    return DistInfo(rank, world, local_rank, device, flag_group)


def max_over_ranks(values: list[int], dist_info: DistInfo) -> list[int]:
    """The element-wise maximum of small host integers (e.g. flags) over all processes, computed on
    the CPU: every process calls it at the same point of the loop."""
    if not (dist_info.distributed and dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=dist_info.flag_group)
    return [int(v) for v in t.tolist()]


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over all processes (``x`` itself when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        x = x.detach().clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
    return x


def all_true(flag: bool) -> bool:
    """True only if ``flag`` is True on every process."""
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor(float(flag), device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())
    return flag


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def end_process(code: int) -> NoReturn:
    """Exit with ``code``. A torchrun worker ends without Python's shutdown: DDP keeps the process
    group alive past ``destroy_process_group``, so a gloo worker thread may still be releasing a
    finished collective's tensors while the interpreter shuts down, and that aborts the process
    (SIGABRT) after a run that went well. Everything is written and flushed by then."""
    if launched_world_size() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
