"""A distributed, resumable sampler whose indices carry their epoch.

It yields ``(epoch, index)`` keys: the Dataset seeds every sample's randomness (crop,
flip, noise, instruction) from ``(seed, epoch, index)``, so a sample is the same whatever
the number of workers or ranks, and a resumed run sees exactly the batches it would have.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffles ``range(n)`` per epoch with ``seed + epoch``, gives rank ``r`` every
    ``world``-th index (dropping the tail so all ranks see the same count) and can skip the
    first ``skip`` keys of an epoch (to resume mid-epoch)."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        if n < world_size:
            raise ValueError(f"{n} samples cannot be shared by {world_size} processes")
        self.n, self.rank, self.world_size = n, rank, world_size
        self.seed = seed
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return self.n // self.world_size - self.skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        per_rank = self.n // self.world_size
        mine = order[self.rank: per_rank * self.world_size: self.world_size]
        for idx in mine[self.skip:]:
            yield self.epoch, idx
