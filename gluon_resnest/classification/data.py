"""Training and validation loaders of a training run, from an ImageNet folder or RecordIO files.

Both splits use the project's datasets (``gluon_resnest.data``); validation uses ``EvalTransform`` so that
the val top-1 logged here is what ``eval.py`` measures on the saved checkpoint. The training order is a
permutation drawn from ``(seed, epoch)``, split across workers, so a resumed run (even from the middle of
an epoch) sees exactly the batches an uninterrupted run would. Training images are decoded and augmented
with OpenCV (:mod:`~gluon_resnest.data.opencv_augment`: AutoAugment first, then the recipe's pipeline for
the input size, ``efficientnet`` from 320 px, else ``inception``; each image's augmentation drawn from
``(seed, epoch, index)``) in the loader's processes, straight into reused shared-memory batches
(:mod:`~gluon_resnest.data.shared_batches`); ``--data-backend recordio`` reads RecordIO
through MXNet's C++ pipeline instead (:class:`~gluon_resnest.data.recordio.RecordIOTrainIter`).
"""
from mxnet.gluon.data import Dataset, Sampler

from ..data import EvalTransform, ImageFolder, ImageRecord, resolve_split_dir
from ..data.eval_loader import make_eval_loader
from ..data.efficientnet_augment import train_pipeline
from ..data.holdout import split_folder
from ..data.opencv_augment import AugmentedTrainSet, TrainAugment
from ..data.recordio import RecordIOTrainIter
from ..data.shared_batches import SharedBatchLoader
from ..engine.sampler import ShardedShuffleSampler

__all__ = ['load_datasets', 'train_loader', 'val_loader', 'data_backend',
           'recordio_train_loader']


def load_datasets(config, resumed=False, is_root=True):
    """The (train, val) datasets named by ``config.data_dir`` or ``rec_train``/``rec_val`` (one-line errors).

    With ``config.val_fraction`` a folder of class folders (``data_dir`` or ``data_dir/train``) is split
    (:func:`~gluon_resnest.data.holdout.split_folder`; ``resumed`` reads the run's list back, ``is_root``
    writes it).
    """
    if config.rec_train:
        return (ImageRecord(config.rec_train, config.rec_train_idx or None),
                ImageRecord(config.rec_val, config.rec_val_idx or None) if config.rec_val else None)
    train_dir = resolve_split_dir(config.data_dir, 'train')
    val_dir = resolve_split_dir(config.data_dir, 'val')
    if config.val_fraction:
        if val_dir != train_dir:
            raise FileNotFoundError('data_dir %s has a val/ folder: val_fraction splits a folder without one'
                                    % config.data_dir)
        return split_folder(train_dir, config.val_fraction, config.seed, config.save_dir, resumed, is_root)
    if val_dir == train_dir:
        raise FileNotFoundError('data_dir %s needs train/ and val/ sub-folders (or val_fraction to hold '
                                'out a fraction of its images)' % config.data_dir)
    train, val = ImageFolder(train_dir), ImageFolder(val_dir)
    if train.synsets != val.synsets:
        raise ValueError('train/ and val/ of %s have different class folders (%d vs %d)'
                         % (config.data_dir, len(train.synsets), len(val.synsets)))
    return train, val


def train_loader(dataset, config, dist, batch_size, classes=None):
    """Batches of this worker's shard of ``dataset`` with the recipe's training augmentation (OpenCV).

    ``config`` (a TrainConfig) gives the augmentation, seed and workers; ``batch_size`` is per worker;
    ``classes``, when given, bounds the labels (one-line error naming an image outside 0..classes-1).

    Returns
    -------
    (SharedBatchLoader, ShardedShuffleSampler)
        Call ``sampler.set_epoch(epoch, start_batch)`` before iterating the loader.
    """
    sampler = ShardedShuffleSampler(len(dataset), batch_size, dist.num_workers, dist.rank, config.seed)
    if sampler.batches_per_epoch < 1:
        raise ValueError('%d training images are fewer than one batch of %d on each of %d worker(s)'
                         % (len(dataset), batch_size, dist.num_workers))
    augment = TrainAugment(config.input_size, min_random_area=config.min_random_area,
                           random_mirror=bool(config.random_mirror), jitter=config.jitter_param,
                           lighting=config.lighting_param, auto_aug=config.auto_aug)
    dataset, order = AugmentedTrainSet(dataset, augment, config.seed, classes), _EpochTagged(sampler)
    size = config.input_size
    loader = SharedBatchLoader(dataset, order, batch_size, (3, size, size), num_workers=config.num_data_workers)
    return loader, sampler


class _EpochTagged(Sampler):
    # (epoch, index) keys for AugmentedTrainSet: the epoch seeds each image's augmentation.
    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        epoch = self.sampler.epoch
        return ((epoch, index) for index in self.sampler)

    def __len__(self):
        return len(self.sampler)


def data_backend(config, resumed=None):
    """``(backend, reason)``: 'python' or 'recordio' (C++), resolving ``data_backend='auto'``.

    ``auto`` takes the Python path (OpenCV in the loader's processes), the faster one where both were
    measured, except that a run resumed from a checkpoint of the C++ path (``resumed``: that run's
    settings) stays on it, so that its epochs continue as they began.
    """
    opencv = 'training images decoded and augmented with OpenCV (%s%s pipeline) in %d loader process(es)%s' % (
        'AutoAugment, then the ' if config.auto_aug else '', train_pipeline(config.input_size),
        config.num_data_workers,
        '' if config.num_data_workers else ' (-j 0: in the training process)')
    cpp = "training images decoded and augmented by MXNet's C++ RecordIO pipeline (%d thread(s))" \
        % max(1, config.num_data_workers)
    if config.data_backend == 'recordio':
        return 'recordio', cpp
    if config.data_backend == 'auto' and config.rec_train and not config.auto_aug \
            and train_pipeline(config.input_size) == 'inception' \
            and (resumed or {}).get('data_backend') == 'recordio':
        return 'recordio', cpp + ', as the run being resumed'
    return 'python', opencv


def recordio_train_loader(config, dist, classes, batch_size, threads):
    """The C++ training iterator over this worker's shard; returns it twice, as (loader, sampler)."""
    it = RecordIOTrainIter(config.rec_train, config.rec_train_idx or None, batch_size=batch_size,
                           input_size=config.input_size, min_random_area=config.min_random_area,
                           random_mirror=bool(config.random_mirror), jitter=config.jitter_param,
                           lighting=config.lighting_param, classes=classes, num_parts=dist.num_workers,
                           part_index=dist.rank, seed=config.seed, threads=threads)
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


def val_loader(dataset, config, dist, batch_size):
    """This worker's slice of the validation set with the evaluation protocol's transform, loaded as
    ``eval.py`` loads it (:func:`~gluon_resnest.data.eval_loader.make_eval_loader`)."""
    transform = EvalTransform(config.input_size, config.crop_ratio)
    shard = _Shard(dataset, dist.num_workers, dist.rank) if dist.num_workers > 1 else dataset
    return make_eval_loader(shard, batch_size, transform, num_workers=config.num_data_workers)
