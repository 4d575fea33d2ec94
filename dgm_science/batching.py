"""Batch samplers that shard across distributed ranks themselves.

Every optimisation step takes one *global batch* of ``batch_size * world_size * accumulate``
examples, cut into ``world_size * accumulate`` micro-batches of ``batch_size``: rank ``r`` takes
micro-batches ``r * accumulate .. (r + 1) * accumulate - 1``. So every rank gets the same number of
batches, the ranks' batches are disjoint, and the data of a step depends only on the seed, the
epoch and the global batch size: 2 ranks with batch B/2 see, step by step, the examples one process
with batch B sees. Ranks are read from ``torch.distributed`` when the sampler is iterated (after
Lightning has started the process group), unless given.

:class:`ResumableDataLoader` records how far the training has read (epoch, batches of it) in its
``state_dict``, which Lightning stores in ``last.ckpt`` (``loops.fit_loop.state_dict.combined_loader``)
and gives back to ``load_state_dict`` on resume: a resumed run reads on from the next batch the
uninterrupted run would have read.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _ShardedBatchSampler(Sampler[list[int]]):
    """Global batches cut into per-rank micro-batches (see the module docstring).

    With ``drop_last`` the last incomplete global batch is dropped; without, it is topped up with
    examples from the start of the epoch's order (as ``DistributedSampler`` pads) until it splits
    into ``world_size * accumulate`` non-empty micro-batches, the last of which may be short.
    """

    shards_across_ranks = True  # training.fit: no DistributedSampler on top of this one

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, drop_last: bool = True, accumulate: int = 1,
                 rank: int | None = None, world_size: int | None = None) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if accumulate <= 0:
            raise ValueError(f"accumulate must be positive, got {accumulate}")
        if (rank is None) != (world_size is None) or (world_size is not None and not 0 <= rank < world_size):
            raise ValueError(f"give both rank and world_size with 0 <= rank < world_size, got {rank}, {world_size}")
        self.n, self.batch_size, self.seed, self.drop_last = n, batch_size, seed, drop_last
        self.accumulate, self._fixed_rank, self._fixed_world = accumulate, rank, world_size
        self.epoch = 0
        self.start = 0  # micro-batches of this rank to skip at the start of the next epoch (resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _world(self) -> tuple[int, int]:
        if self._fixed_world is not None:
            return self._fixed_rank, self._fixed_world  # type: ignore[return-value]
        return world()

    def _order(self, generator: torch.Generator, global_size: int) -> list[torch.Tensor]:
        """The epoch's global batches (index tensors of ``global_size``, the last maybe shorter)."""
        raise NotImplementedError  # pragma: no cover - interface

    def _global_batches(self) -> tuple[list[torch.Tensor], int, int]:
        rank, world_size = self._world()
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        slots = world_size * self.accumulate
        batches = self._order(generator, self.batch_size * slots)
        if batches and len(batches[-1]) < self.batch_size * slots:
            if self.drop_last:
                batches.pop()
            elif len(batches[-1]) < slots:  # top up so that every micro-batch has an example
                batches[-1] = torch.cat([batches[-1], torch.arange(slots - len(batches[-1])) % self.n])
        return batches, rank, slots

    def __iter__(self) -> Iterator[list[int]]:
        batches, rank, slots = self._global_batches()
        self.epoch += 1
        skip, self.start = self.start, 0
        for batch in batches[skip // self.accumulate :]:  # the order is that of the whole epoch
            micro = batch.tensor_split(slots) if len(batch) < self.batch_size * slots else batch.split(self.batch_size)
            for part in micro[rank * self.accumulate + skip % self.accumulate : (rank + 1) * self.accumulate]:
                yield part.tolist()
            skip = 0

    def __len__(self) -> int:
        rank, world_size = self._world()
        slots = world_size * self.accumulate
        full, rest = divmod(self.n, self.batch_size * slots)
        keep_rest = rest > 0 and not self.drop_last
        return (full + keep_rest) * self.accumulate


class ResumableDataLoader(DataLoader):
    """A DataLoader over a batch sampler of this module that Lightning can save and restore
    (``state_dict`` / ``load_state_dict``): the state is the sampler's epoch and how many of its
    batches this loader has handed out, counted in the main process as the training loop takes them
    (Lightning does not prefetch from a loader with a length, so at a checkpoint that is the number
    of batches trained on). ``load_state_dict`` makes the next iteration start there; the sampler
    skips the batches already trained on without loading them."""

    def __init__(self, dataset: Any, *, batch_sampler: _ShardedBatchSampler, **kwargs: Any) -> None:
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self._position = (batch_sampler.epoch, 0)  # (epoch, batches of it handed out)
        self._resume: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler = self.batch_sampler
        assert isinstance(sampler, _ShardedBatchSampler)
        if self._resume is not None:  # a restored position wins over the epoch Lightning set
            sampler.epoch, sampler.start = self._resume
            self._resume = None
        epoch, start = sampler.epoch, sampler.start
        self._position = (epoch, start)
        for count, batch in enumerate(super().__iter__(), start + 1):
            self._position = (epoch, count)
            yield batch

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self._position
        return {"epoch": int(epoch), "batches": int(batches)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= len(self):  # saved at the end of an epoch: the next one starts from its beginning
            epoch, batches = epoch + 1, 0
        self._resume = (epoch, batches)
        self._position = (epoch, batches)


class RandomBatchSampler(_ShardedBatchSampler):
    """Shuffled batches of a dataset of ``n`` examples, deterministic per (seed, epoch)."""

    def _order(self, generator: torch.Generator, global_size: int) -> list[torch.Tensor]:
        return list(torch.randperm(self.n, generator=generator).split(global_size))


class LengthBucketBatchSampler(_ShardedBatchSampler):
    """Shuffle, cut into pools of ``pool_batches`` global batches, sort each pool by length, cut the
    pool into global batches, shuffle the batches (the bucketing of fairseq / torchtext iterators):
    batches of similar-length sequences waste little compute on padding. Deterministic per (seed,
    epoch); each rank's micro-batch is a contiguous run of its length-sorted global batch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0, drop_last: bool = True,
                 pool_batches: int = 50, accumulate: int = 1, rank: int | None = None,
                 world_size: int | None = None) -> None:
        super().__init__(len(lengths), batch_size, seed=seed, drop_last=drop_last, accumulate=accumulate, rank=rank,
                         world_size=world_size)
        self.lengths = torch.as_tensor(lengths)
        self.pool_batches = pool_batches

    def _order(self, generator: torch.Generator, global_size: int) -> list[torch.Tensor]:
        order = torch.randperm(self.n, generator=generator)
        pool = global_size * self.pool_batches
        batches: list[torch.Tensor] = []
        for start in range(0, self.n, pool):  # every pool but the last is a whole number of batches
            chunk = order[start : start + pool]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches.extend(chunk.split(global_size))
        short = batches.pop() if batches and len(batches[-1]) < global_size else None
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return shuffled + ([short] if short is not None else [])


class ShardedSampler(Sampler[int]):
    """Indices ``0..n-1`` in order, rank ``r`` of ``W`` taking ``r, r + W, ...``; padded from the start
    to a multiple of ``W`` (as ``DistributedSampler``) so every rank has the same number. For
    validation: each rank scores its own shard, the mean is reduced across ranks."""

    shards_across_ranks = True

    def __init__(self, n: int, *, rank: int | None = None, world_size: int | None = None) -> None:
        self.n, self._fixed_rank, self._fixed_world = n, rank, world_size

    def _world(self) -> tuple[int, int]:
        if self._fixed_world is not None:
            return self._fixed_rank, self._fixed_world  # type: ignore[return-value]
        return world()

    def __iter__(self) -> Iterator[int]:
        rank, world_size = self._world()
        total = len(self) * world_size
        return iter([i % self.n for i in range(rank, total, world_size)] if self.n else [])

    def __len__(self) -> int:
        return -(-self.n // self._world()[1])
