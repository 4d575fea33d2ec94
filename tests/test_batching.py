import pytest

from dgm_science.batching import LengthBucketBatchSampler, RandomBatchSampler, ShardedSampler


def test_buckets_cover_every_index_once_and_group_lengths():
    lengths = [(i * 37) % 61 + 1 for i in range(1000)]
    sampler = LengthBucketBatchSampler(lengths, 10, seed=0, pool_batches=50)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 100
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 5  # random batches of 10 would spread ~48 lengths


def test_same_seed_same_order_new_epoch_new_order():
    lengths = list(range(200))
    a = list(LengthBucketBatchSampler(lengths, 8, seed=3))
    b = list(LengthBucketBatchSampler(lengths, 8, seed=3))
    assert a == b
    sampler = LengthBucketBatchSampler(lengths, 8, seed=3)
    assert list(sampler) != list(sampler)  # the second pass is epoch 1


def test_drop_last_false_keeps_the_remainder():
    sampler = LengthBucketBatchSampler([1] * 25, 10, drop_last=False)
    assert sorted(len(b) for b in sampler) == [5, 10, 10]


def _ranks(make, world):
    """Each rank's batches from a sampler built by ``make(rank, world)``, checking ``len``."""
    out = []
    for rank in range(world):
        sampler = make(rank, world)
        batches = list(sampler)
        assert len(batches) == len(sampler)  # __len__ tells the truth on every rank
        out.append(batches)
    return out


@pytest.mark.parametrize("kind", ["bucket", "random"])
@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_get_equal_counts_of_disjoint_batches_covering_the_data(kind, world):
    lengths = [(i * 37) % 61 + 1 for i in range(1003)]

    def make(rank, world_size, batch=7, accumulate=1):
        if kind == "bucket":
            return LengthBucketBatchSampler(lengths, batch, seed=1, pool_batches=5, rank=rank, world_size=world_size,
                                            accumulate=accumulate)
        return RandomBatchSampler(len(lengths), batch, seed=1, rank=rank, world_size=world_size,
                                  accumulate=accumulate)

    per_rank = _ranks(make, world)
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == 1003 // (7 * world)
    assert all(len(batch) == 7 for batches in per_rank for batch in batches)
    flat = [i for batches in per_rank for batch in batches for i in batch]
    assert len(flat) == len(set(flat)) == 1003 // (7 * world) * 7 * world  # disjoint; only the remainder dropped
    # step k of W ranks with batch b is step k of one process with batch W * b, and of one process
    # accumulating W micro-batches of b
    (single,) = _ranks(lambda r, w: make(r, w, batch=7 * world), 1)
    (accumulated,) = _ranks(lambda r, w: make(r, w, accumulate=world), 1)
    for step, batch in enumerate(single):
        assert sorted(i for batches in per_rank for i in batches[step]) == sorted(batch)
        assert sorted(sum(accumulated[step * world : (step + 1) * world], [])) == sorted(batch)
    if kind == "bucket":  # a rank's batch is a contiguous run of its length-sorted global batch
        spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in per_rank[0]) / len(per_rank[0])
        assert spread < 8


def test_without_drop_last_every_rank_gets_a_batch_and_all_data():
    per_rank = _ranks(lambda r, w: RandomBatchSampler(23, 5, drop_last=False, rank=r, world_size=w), 2)
    assert [len(b) for b in per_rank] == [3, 3]
    flat = [i for batches in per_rank for batch in batches for i in batch]
    assert set(flat) == set(range(23)) and all(len(batch) > 0 for batches in per_rank for batch in batches)
    tiny = _ranks(lambda r, w: RandomBatchSampler(3, 5, drop_last=False, rank=r, world_size=w), 4)
    assert all(len(b) == 1 and len(b[0]) == 1 for b in tiny)  # 3 examples topped up to one each for 4 ranks


def test_validation_shards_are_equal_and_cover_the_data():
    shards = [list(ShardedSampler(10, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [len(ShardedSampler(10, rank=r, world_size=3)) for r in range(3)] == [4, 4, 4]
    assert set(sum(shards, [])) == set(range(10))
    assert sorted(sum(shards, [])) == sorted(list(range(10)) + [0, 1])  # padded from the start, like DistributedSampler
    assert list(ShardedSampler(5)) == [0, 1, 2, 3, 4]


def test_bad_sampler_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="batch_size"):
        RandomBatchSampler(10, 0)
    with pytest.raises(ValueError, match="rank"):
        RandomBatchSampler(10, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="accumulate"):
        LengthBucketBatchSampler([1, 2], 1, accumulate=0)
