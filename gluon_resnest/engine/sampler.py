"""The training order every task shares: a seeded per-epoch permutation, split across workers, resumable
from any batch (a resumed run sees the batches an uninterrupted one would)."""
import numpy as np
from mxnet.gluon.data import Sampler

__all__ = ['ShardedShuffleSampler']


class ShardedShuffleSampler(Sampler):
    """This worker's share of a seeded per-epoch permutation, in whole batches, from batch ``start``.

    Every worker gets the same number of batches (the tail that does not fill one batch on every worker
    is dropped), which synchronous training needs.

    Parameters
    ----------
    length : int
        Dataset size.
    batch_size : int
        Per-worker batch size.
    num_parts, part_index : int
        Number of workers and this worker's rank.
    seed : int
    """

    def __init__(self, length, batch_size, num_parts=1, part_index=0, seed=0):
        self.length = length
        self.batch_size = batch_size
        self.num_parts = num_parts
        self.part_index = part_index
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self):
        """Number of full batches each worker trains on per epoch."""
        return self.length // (self.num_parts * self.batch_size)

    def set_epoch(self, epoch, start_batch=0):
        """Select the permutation of ``epoch`` and skip its first ``start_batch`` batches."""
        self.epoch = epoch
        self.start_batch = start_batch

    def __iter__(self):
        order = np.random.RandomState([self.seed, self.epoch]).permutation(self.length)
        used = self.batches_per_epoch * self.batch_size
        mine = order[self.part_index::self.num_parts][:used]
        return iter(mine[self.start_batch * self.batch_size:].tolist())

    def __len__(self):
        return (self.batches_per_epoch - self.start_batch) * self.batch_size
