"""gluon_resnest.engine.sampler: each worker's shard of an epoch, and resuming inside it."""
from gluon_resnest.engine.sampler import ShardedShuffleSampler


def test_sharded_sampler_partitions_and_resumes():
    shards = [ShardedShuffleSampler(23, 3, num_parts=2, part_index=r, seed=7) for r in range(2)]
    for s in shards:
        s.set_epoch(4)
    orders = [list(s) for s in shards]
    assert [len(o) for o in orders] == [9, 9]          # 23 // (2 * 3) = 3 batches of 3 each
    assert not set(orders[0]) & set(orders[1])
    resumed = ShardedShuffleSampler(23, 3, 2, 0, seed=7)
    resumed.set_epoch(4, start_batch=2)
    assert list(resumed) == orders[0][6:] and len(resumed) == 3
    shards[0].set_epoch(5)
    assert list(shards[0]) != orders[0]                # a new permutation each epoch

