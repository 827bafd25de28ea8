"""Training and validation loaders for train_imagenet.py, from an ImageNet folder or RecordIO files.

Both splits use the project's datasets (``gluon_resnest.data``); validation uses ``EvalTransform`` so that
the val top-1 logged here is what ``eval.py`` measures on the saved checkpoint. The training order is a
permutation drawn from ``(seed, epoch)``, split across workers, so a resumed run (even from the middle of
an epoch) sees exactly the batches an uninterrupted run would. Training from RecordIO reads through MXNet's
C++ pipeline (:class:`~gluon_resnest.data.recordio.RecordIOTrainIter`) unless ``--data-backend python``
or ``--auto-aug`` (no C++ form) asks for the Python transforms.
"""
import numpy as np
from mxnet.gluon.data import DataLoader, Dataset, Sampler

from ..data import EvalTransform, ImageFolder, ImageRecord, make_loader, resolve_split_dir
from ..data.recordio import RecordIOTrainIter
from ..data.train_transforms import train_transform

__all__ = ['ShardedShuffleSampler', 'load_datasets', 'train_loader', 'val_loader', 'data_backend',
           'recordio_train_loader']


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


def load_datasets(args):
    """The (train, val) datasets named by ``--data-dir`` or ``--rec-train``/``--rec-val`` (one-line errors)."""
    if args.rec_train:
        return (ImageRecord(args.rec_train, args.rec_train_idx or None),
                ImageRecord(args.rec_val, args.rec_val_idx or None) if args.rec_val else None)
    train_dir = resolve_split_dir(args.data_dir, 'train')
    val_dir = resolve_split_dir(args.data_dir, 'val')
    if val_dir == train_dir:
        raise FileNotFoundError('--data-dir %s needs train/ and val/ sub-folders' % args.data_dir)
    train, val = ImageFolder(train_dir), ImageFolder(val_dir)
    if train.synsets != val.synsets:
        raise ValueError('train/ and val/ of %s have different class folders (%d vs %d)'
                         % (args.data_dir, len(train.synsets), len(val.synsets)))
    return train, val


def train_loader(dataset, args, dist):
    """A DataLoader over this worker's shard of ``dataset`` with the recipe's training transform.

    Returns
    -------
    (DataLoader, ShardedShuffleSampler)
        Call ``sampler.set_epoch(epoch, start_batch)`` before iterating the loader.
    """
    transform = train_transform(args.input_size, auto_aug=args.auto_aug, min_random_area=args.min_random_area,
                                random_mirror=bool(args.random_mirror), jitter=args.jitter_param,
                                lighting=args.lighting_param)
    sampler = ShardedShuffleSampler(len(dataset), args.batch_size, dist.num_workers, dist.rank, args.seed)
    if sampler.batches_per_epoch < 1:
        raise ValueError('%d training images are fewer than one batch of %d on each of %d worker(s)'
                         % (len(dataset), args.batch_size, dist.num_workers))
    loader = DataLoader(dataset.transform_first(transform), batch_size=args.batch_size, sampler=sampler,
                        num_workers=args.num_data_workers, last_batch='discard')
    return loader, sampler


def data_backend(args):
    """``(backend, reason)``: 'recordio' (C++) or 'python', resolving ``--data-backend auto``."""
    if args.data_backend == 'python':
        return 'python', 'training images decoded and augmented in Python (--data-backend python)'
    if not args.rec_train:
        return 'python', 'training images decoded and augmented in Python (--data-dir folder)'
    if args.auto_aug:
        return 'python', ('--auto-aug: AutoAugment has no C++ form, so training images are decoded and '
                          'augmented in Python instead of MXNet\'s C++ RecordIO pipeline')
    return 'recordio', "training images decoded and augmented by MXNet's C++ RecordIO pipeline (%d thread(s))" \
        % max(1, args.num_data_workers)


def recordio_train_loader(args, dist, classes):
    """The C++ training iterator over this worker's shard; returns it twice, as (loader, sampler)."""
    it = RecordIOTrainIter(args.rec_train, args.rec_train_idx or None, batch_size=args.batch_size,
                           input_size=args.input_size, min_random_area=args.min_random_area,
                           random_mirror=bool(args.random_mirror), jitter=args.jitter_param,
                           lighting=args.lighting_param, classes=classes, num_parts=dist.num_workers,
                           part_index=dist.rank, seed=args.seed, threads=args.num_data_workers)
    return it, it


class _Shard(Dataset):
    # Every worker validates a contiguous slice; the counts are summed across workers afterwards.
    def __init__(self, dataset, num_parts, part_index):
        per = (len(dataset) + num_parts - 1) // num_parts
        self.dataset = dataset
        self.indices = list(range(part_index * per, min(len(dataset), (part_index + 1) * per)))

    def __getitem__(self, idx):
        return self.dataset[self.indices[idx]]

    def __len__(self):
        return len(self.indices)


def val_loader(dataset, args, dist):
    """This worker's slice of the validation set with the evaluation protocol's transform."""
    transform = EvalTransform(args.input_size, args.crop_ratio)
    shard = _Shard(dataset, dist.num_workers, dist.rank) if dist.num_workers > 1 else dataset
    return make_loader(shard, args.batch_size, transform, num_workers=args.num_data_workers)
