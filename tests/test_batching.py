from dgm_science.batching import LengthBucketBatchSampler


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
