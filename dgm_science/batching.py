"""Length-bucketed batching: batches of similar-length sequences waste little compute on padding."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Shuffle, cut into pools of ``pool_batches`` batches, sort each pool by length, cut the pool
    into batches, shuffle the batches (the bucketing of fairseq / torchtext iterators).

    Deterministic per (seed, epoch); under torch.distributed each rank takes every
    ``world_size``-th batch, so it replaces a DistributedSampler.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0, drop_last: bool = True,
                 pool_batches: int = 50) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.lengths = torch.as_tensor(lengths)
        self.batch_size, self.seed, self.drop_last, self.pool_batches = batch_size, seed, drop_last, pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _world(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        pool = self.batch_size * self.pool_batches
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            for b in range(0, len(chunk), self.batch_size):
                batch = chunk[b : b + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch.tolist())
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        rank, world = self._world()
        return [batches[i] for i in shuffled][rank::world]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        n = len(self.lengths) // self.batch_size if self.drop_last else -(-len(self.lengths) // self.batch_size)
        return n // self._world()[1]
